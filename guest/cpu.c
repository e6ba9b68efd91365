/*
 * cpu.c - the "cpu" workload: floating point with no memory traffic.
 * sin and pow come from the x87 (fsin, fyl2x, f2xm1, fscale), so no libm.
 */
#include "user.h"

static inline double x87_sin(double x)
{
	double r;

	__asm__("fsin" : "=t"(r) : "0"(x));
	return r;
}

/* a ** b for a > 0, as 2 ** (b * log2 a) */
static inline double x87_pow(double a, double b)
{
	double z, r;

	__asm__("fyl2x" : "=t"(z) : "0"(a), "u"(b) : "st(1)");
	__asm__("fld %%st(0)\n\t"       /* z z */
		"frndint\n\t"           /* n z */
		"fxch\n\t"              /* z n */
		"fsub %%st(1), %%st\n\t" /* f=z-n n, |f| <= 0.5 */
		"f2xm1\n\t"             /* 2^f-1 n */
		"fld1\n\t"
		"faddp\n\t"             /* 2^f n */
		"fscale\n\t"            /* 2^f*2^n n */
		"fstp %%st(1)"          /* result */
		: "=t"(r) : "0"(z));
	return r;
}

volatile double cpu_sink;

noreturn void run_cpu(u32 cpu)
{
	double acc = 0;

	for (u64 i = 1;; i++) {
		double s = x87_sin((double)i);

		acc += x87_pow(__builtin_fabs(s) + 1e-3, (double)(i & 31));
		if (!(i & 255)) {
			cpu_sink = acc;
			acc = 0;
			sh.work[cpu].units = i;
			if (cpu == 0)
				bsp_poll();
		}
	}
}
