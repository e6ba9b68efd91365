/* ferry run --restore FILE [--lazy]: build the VM a save file holds (cli/restore.c). */
#ifndef FERRY_CLI_RESTORE_H
#define FERRY_CLI_RESTORE_H

#include "board/machine.h"
#include "migration/migration.h"
#include "migration/savefile/savefile.h"

struct restore_opts {
	const char *file;
	bool lazy;
	const char *serial;
	/* --disk / --net given on the command line: they replace the recorded ones. */
	const struct block_config *disks;
	unsigned nr_disks;
	const struct net_config *nics;
	unsigned nr_nics;
	const struct net_announce_params *announce;
	/* --cpu-model: what this host offers the guest (NULL: all KVM has). */
	const struct x86_cpu_model *cpu_model;
};

/* What a restore leaves open while the VM runs: the file and, with --lazy, its loader. */
struct restore_state {
	struct savefile sf;
	struct savefile_lazy lz;
	bool lazy_started;
};

/*
 * Create machine m from the file, fill its RAM (or arrange for it to be
 * filled on first touch), load its state and take its disks: the vCPUs
 * are ready to start.  Returns 0, or the exit status after saying why;
 * then m holds nothing and the guest never ran.
 */
int restore_machine(struct machine *m, struct migration *mig, const struct restore_opts *o,
		    struct restore_state *rs);
/* After the vCPUs stopped: end the lazy loader, close the file. */
void restore_finish(struct restore_state *rs);

#endif
