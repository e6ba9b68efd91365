/* The boot processor's register state at a PVH entry point. */
#ifndef FERRY_ARCH_X86_BOOT_H
#define FERRY_ARCH_X86_BOOT_H

#include <stdint.h>

/*
 * Put vCPU `vcpu_fd` in 32-bit protected mode with flat segments and paging
 * off, at `entry`, with EBX = `start_info`, as the PVH boot protocol says.
 * Returns 0 or -errno.
 */
int x86_boot_pvh(int vcpu_fd, uint32_t entry, uint32_t start_info)
	__attribute__((warn_unused_result));

#endif
