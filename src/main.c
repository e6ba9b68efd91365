/* ferry: a KVM virtual machine monitor built for live migration. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const char main_usage[] =
"Usage: ferry COMMAND [options]\n"
"\n"
"Commands:\n"
"  run       boot a VM (ferry run --help)\n"
"  status    show a running VM's state:   ferry status CONTROL\n"
"  pause     pause a running VM's vCPUs:  ferry pause CONTROL\n"
"  resume    resume a paused VM:          ferry resume CONTROL\n"
"  quit      shut a VM down:              ferry quit CONTROL\n"
"  announce  re-announce the VM's NICs:   ferry announce CONTROL\n"
"  call      send any control command:    ferry call CONTROL COMMAND [JSON]\n"
"  migrate   live-migrate a VM:           ferry migrate CONTROL URI [options]\n"
"  save      save a VM to a file and stop it: ferry save CONTROL FILE [--keep-running]\n"
"  snapshot  save a running VM as it is now, running on: ferry snapshot CONTROL FILE\n"
"            (restore either: ferry run --restore FILE [--lazy])\n"
"  migrate-postcopy  switch a running migration to post-copy: ferry migrate-postcopy CONTROL\n"
"  migrate-resolve   settle a switchover in doubt: ferry migrate-resolve CONTROL run|abandon\n"
"  replicate keep a standby in step (checkpoints): ferry replicate CONTROL URI [--interval 50ms]\n"
"  failover  on a standby, resume the guest from its last checkpoint: ferry failover CONTROL\n"
"  report    show a migration from its --stats-file: ferry report STATS.csv [--png FILE]\n"
"\n"
"CONTROL is the unix socket given to 'ferry run --control PATH'.\n"
"'ferry COMMAND --help' describes each command.\n";

int main(int argc, char **argv)
{
	static const char *const client_verbs[] = { "status", "pause", "resume", "quit", "announce", "call", "migrate-postcopy",
						      "migrate-resolve", "failover" };

	if (argc < 2) {
		fputs(main_usage, stderr);
		return FERRY_EXIT_USAGE;
	}
	const char *verb = argv[1];
	if (!strcmp(verb, "-h") || !strcmp(verb, "--help") || !strcmp(verb, "help")) {
		fputs(main_usage, stdout);
		return 0;
	}
	if (!strcmp(verb, "run"))
		return cli_run(argc - 1, argv + 1);
	if (!strcmp(verb, "migrate"))
		return cli_migrate(argc - 1, argv + 1);
	if (!strcmp(verb, "save"))
		return cli_save(argc - 1, argv + 1);
	if (!strcmp(verb, "snapshot"))
		return cli_snapshot(argc - 1, argv + 1);
	if (!strcmp(verb, "replicate"))
		return cli_replicate(argc - 1, argv + 1);
	if (!strcmp(verb, "report"))
		return cli_report(argc - 1, argv + 1);
	for (size_t i = 0; i < sizeof(client_verbs) / sizeof(client_verbs[0]); i++)
		if (!strcmp(verb, client_verbs[i]))
			return cli_client(verb, argc - 1, argv + 1);
	fprintf(stderr, "ferry: unknown command '%s'\n\n%s", verb, main_usage);
	return FERRY_EXIT_USAGE;
}
