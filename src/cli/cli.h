/* The CLI verbs and the exit statuses they share (see README.md). */
#ifndef FERRY_CLI_CLI_H
#define FERRY_CLI_CLI_H

/*
 * `ferry run` exits with the guest's debug-exit value (0..255) when the
 * guest ends itself, else with one of these.  They follow sysexits.h.
 */
enum ferry_exit {
	FERRY_EXIT_OK = 0,
	FERRY_EXIT_USAGE = 64,		/* bad command line */
	FERRY_EXIT_DATAERR = 65,	/* bad input: kernel image, stream */
	FERRY_EXIT_NOINPUT = 66,	/* a named file does not exist */
	FERRY_EXIT_UNAVAILABLE = 69,	/* no /dev/kvm; no VM at the control socket */
	FERRY_EXIT_SOFTWARE = 70,	/* a command failed inside ferry */
	FERRY_EXIT_OSERR = 71,		/* out of memory, socket busy, ... */
	FERRY_EXIT_CANTCREAT = 73,	/* cannot create an output file (--serial, report --png) */
	FERRY_EXIT_IOERR = 74,		/* the migration connection failed */
	FERRY_EXIT_VM_LOST = 75,	/* post-copy broke after the guest moved: VM lost */
	FERRY_EXIT_GUEST_CRASH = 80,	/* triple fault or KVM could not run the guest */
	/* + the signal's number, as a shell reports it: --incoming stopped, guest not started */
	FERRY_EXIT_SIGNAL = 128,
};

int cli_run(int argc, char **argv);
int cli_client(const char *verb, int argc, char **argv);
int cli_migrate(int argc, char **argv);
int cli_save(int argc, char **argv);
int cli_snapshot(int argc, char **argv);
int cli_report(int argc, char **argv);
int cli_replicate(int argc, char **argv);

#endif
