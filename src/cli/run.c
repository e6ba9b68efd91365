/* ferry run: boot a VM and run it until the guest exits or is told to stop. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "arch/x86/cpu_model.h"
#include "cli/cli.h"
#include "cli/restore.h"
#include "control/control.h"
#include "migration/block.h"
#include "migration/dest/incoming.h"
#include "migration/migration.h"
#include "migration/live_scratch.h"
#include "util/log.h"
#include "util/parse.h"
#include "board/machine.h"
#include "board/machine_state.h"

static const char run_usage[] =
"Usage: ferry run --kernel FILE [options]\n"
"       ferry run --incoming URI [options]\n"
"       ferry run --restore FILE [--lazy] [options]\n"
"\n"
"Boot a VM from a PVH ELF kernel or a bzImage, or receive one by live migration, and run\n"
"it until the guest exits, it migrates away, a quit command arrives, or\n"
"ferry gets SIGINT/SIGTERM.\n"
"\n"
"Options:\n"
"  -k, --kernel FILE      kernel to boot: a PVH ELF (e.g. build/probe.elf, a\n"
"                         Linux vmlinux) or a bzImage (boot protocol 2.12 or\n"
"                         later, entered at its 64-bit entry point)\n"
"      --initrd FILE      initial RAM disk: for a bzImage in the zero page, for\n"
"                         a PVH kernel as the module of hvm_start_info\n"
"  -a, --cmdline STR      kernel command line\n"
"  -m, --memory SIZE      guest RAM, e.g. 512M, 1G (default 256M)\n"
"  -c, --vcpus N          number of vCPUs, 1..64 (default 1)\n"
"  -s, --serial SPEC      COM1 backend: stdio, file:PATH, unix:PATH (default stdio)\n"
"  -d, --disk path=FILE[,readonly=on][,cache=none|writeback][,locking=off][,serial=S]\n"
"      --disk nbd=URI[,readonly=on][,serial=S]\n"
"                         a virtio-blk disk on a raw image, or on an NBD export\n"
"                         (nbd://HOST[:PORT]/EXPORT, nbd+unix:///EXPORT?socket=PATH),\n"
"                         repeatable, up to 8; cache=none opens the image with\n"
"                         O_DIRECT; an image is locked while this VM may write\n"
"                         it (QEMU's lock bytes; locking=off: not); serial is\n"
"                         what GET_ID answers (up to 20 characters).  With\n"
"                         --incoming, give the same disks as the source, in the\n"
"                         same order: they are locked when the guest starts here\n"
"  -n, --net tap=IFNAME[,mac=MAC]\n"
"                         a virtio-net NIC on a tap device (repeatable; disks and\n"
"                         NICs share 8 slots); without mac=, a random locally\n"
"                         administered one.  With --incoming, give as many NICs\n"
"                         as the source had (the taps of this host); the MAC\n"
"                         comes from the source\n"
"      --announce rounds=N,initial=T,step=T,max=T\n"
"                         after the guest starts here from a migration (and on\n"
"                         'ferry announce'), send N rounds of gratuitous RARP\n"
"                         from each NIC's MAC on its tap, so that switches learn\n"
"                         the guest's new port: the first at once, the next after\n"
"                         initial, each later gap step longer, at most max\n"
"                         (default rounds=5,initial=50ms,step=100ms,max=550ms,\n"
"                         as QEMU; rounds=0: none)\n"
"  -C, --control PATH     serve the JSON control API on this unix socket\n"
"  -i, --incoming URI     wait for a migration on tcp:HOST:PORT or unix:PATH,\n"
"                         or restore a VM saved with 'ferry migrate CONTROL\n"
"                         file:PATH' from file:PATH (it runs only if the file\n"
"                         is complete and every checksum matches);\n"
"                         the VM's size comes in the stream (with --memory and\n"
"                         --vcpus given, a larger VM is refused; without\n"
"                         --memory, one larger than the host's MemAvailable +\n"
"                         SwapFree is)\n"
"  -r, --restore FILE     start the VM saved in FILE by 'ferry save' (memory,\n"
"                         vCPUs, command line, disks and NICs come from the\n"
"                         file; --disk and --net, if given, replace its disks\n"
"                         and NICs one for one).  RAM is read in full and\n"
"                         checked before the guest runs.  Disks saved with\n"
"                         --disks copy need --disk path=NEW: their contents\n"
"                         are written there\n"
"      --lazy             with --restore: start the guest at once and read each\n"
"                         page from FILE when the guest first touches it, a\n"
"                         prefetch thread loading the rest (keep FILE in place\n"
"                         until ferry logs 'every page is in')\n"
"      --prealloc         allocate all guest RAM at start (like QEMU's\n"
"                         -mem-prealloc); with --incoming, needs --memory and\n"
"                         happens before the source connects (helps pre-copy;\n"
"                         post-copy must drop the pages again)\n"
"      --tls-creds DIR    with --incoming: sources must pass TLS; x509 from\n"
"                         DIR/server-cert.pem and server-key.pem, and\n"
"                         ca-cert.pem (the CA of the sources' certificates), or\n"
"                         PSK from DIR/keys.psk (IDENTITY:HEXKEY lines, any is\n"
"                         accepted) when DIR has no ca-cert.pem.  A source that\n"
"                         fails TLS is refused (logged) and the wait goes on\n"
"      --tls-authz FILE   accept only the sources named in FILE, one a line:\n"
"                         certificate subject DNs as 'CN=ferry-source', or\n"
"                         PSK identities\n"
"      --tls-verify-peer on|off  require a source certificate signed by\n"
"                         ca-cert.pem (default: on when DIR has ca-cert.pem)\n"
"      --resume-timeout T with --incoming: how long a post-copy whose source\n"
"                         was lost waits for it to resume (default 5m)\n"
"      --cpu-model MODEL  the CPU features the guest gets: host (all this host's\n"
"                         KVM offers, the default), baseline (x86-64-v2, which\n"
"                         migrates across any 64-bit host of the last decade),\n"
"                         or FILE, listing the features by name (as\n"
"                         /proc/cpuinfo spells them).  With --incoming: what\n"
"                         this destination offers; a guest that uses a feature\n"
"                         outside it is refused before any page moves.  With\n"
"                         --restore: the same check against the saved CPU\n"
"      --copy-storage     with --incoming: the source copies its disks into\n"
"                         this side's own images (--disk path=, same sizes),\n"
"                         which are locked here from the start ('ferry migrate\n"
"                         --copy-storage')\n"
"      --standby          with --incoming: be the standby of 'ferry replicate':\n"
"                         hold the last whole checkpoint, paused, and resume\n"
"                         the guest from it only on failover (docs/replication.md);\n"
"                         a VM with disks: --copy-storage and its own images\n"
"      --failover auto|manual  with --standby: take over by itself once the\n"
"                         primary has been silent for --failover-timeout (auto,\n"
"                         the default; the primary fences itself sooner), or\n"
"                         only on 'ferry failover CONTROL' (manual; the\n"
"                         primary then runs on if the link breaks)\n"
"      --failover-timeout T  with --standby: the silence after which the\n"
"                         primary counts as gone (default 1s, at least 100ms)\n"
"      --base FILE        with --incoming: FILE is an earlier save of the same VM\n"
"                         ('ferry save', 'ferry snapshot', or 'ferry migrate\n"
"                         --keep-base' when it left this host): its RAM is\n"
"                         loaded first and only the pages that differ travel.\n"
"                         A base of another RAM size is ignored, with a warning\n"
"      --test-hooks       allow the x-test-* control commands (tests only)\n"
"      --x-standby-chunks with --standby --test-hooks: answer as a standby that\n"
"                         takes an epoch's disk blocks as whole chunks only,\n"
"                         as one older than epoch disk ranges (tests only)\n"
"  -q, --quiet            print errors only\n"
"  -v, --verbose          print debug messages\n"
"  -h, --help             show this help\n"
"\n"
"With --incoming, SIGINT/SIGTERM/SIGHUP abandon the incoming migration at\n"
"once: the source is told and runs on, and the guest is not started here.\n"
"\n"
"Exit status: the guest's debug-exit value (port 0xf4) if it wrote one, 0\n"
"after quit, a signal or a completed migration away, 64 usage (a port outside\n"
"1..65535, a host name that does not resolve, a --control path too long too),\n"
"65 bad kernel or migration stream (a truncated, damaged or incomplete saved\n"
"file too), 66 missing file (kernel, save file or disk image; a kernel that\n"
"is not a regular file), 69 no /dev/kvm or a disk image in use by another\n"
"process, 71 system error, 73 --serial file cannot be created (no such\n"
"directory),\n"
"74 incoming migration lost its connection, 75 post-copy failed (or was\n"
"stopped by a signal) after the guest started here: the VM is lost, 80 guest\n"
"crashed, 128 + the signal's number (130 SIGINT, 143 SIGTERM) when a signal\n"
"stopped an incoming migration before the guest started here.\n";

struct run_opts {
	struct machine_config mc;
	struct block_config disks[MACHINE_MAX_DISKS];
	struct net_config nics[MACHINE_MAX_NICS];
	struct net_announce_params announce;
	struct x86_cpu_model cpu_model;
	const char *control;
	const char *incoming;
	struct mig_tls tls;		/* --tls-creds (dir ""): TLS for the incoming one */
	const char *restore;
	bool lazy;
	uint64_t resume_timeout_ns;
	bool memory_set, vcpus_set;
	bool test_hooks;
	bool copy_storage;	/* --incoming: the disks' contents come with the VM */
	bool standby;		/* --incoming --standby: a replication's standby */
	bool standby_chunks;	/* --x-standby-chunks: no epoch disk ranges (tests) */
	enum mig_failover_mode failover_mode;
	uint64_t failover_ns;
	const char *base;	/* --incoming: --base FILE, an earlier save of this VM */
};

/*
 * Paths ferry will create, checked before anything starts, so that a typo
 * is reported as one (not as a missing /dev/kvm, say) and with its status.
 */
static void run_check_paths(const struct run_opts *o)
{
	static const char *const creates[] = { "file:", "unix:" };
	const char *spec = o->mc.serial;

	const size_t sun_max = sizeof(((struct sockaddr_un *)0)->sun_path) - 1;

	if (o->control && (!*o->control || strlen(o->control) > sun_max))
		die(FERRY_EXIT_USAGE, "--control path '%.40s%s' is %s: a unix socket path holds 1 to "
		    "%zu bytes; use a shorter one", o->control, strlen(o->control) > 40 ? "..." : "",
		    *o->control ? "too long" : "empty", sun_max);
	for (size_t i = 0; i < sizeof(creates) / sizeof(creates[0]); i++) {
		size_t n = strlen(creates[i]);
		if (strncmp(spec, creates[i], n) || !spec[n])
			continue;
		if (i == 0 && access(spec + n, W_OK) == 0)
			continue;	/* a file there already, ours to write (/dev/null, say) */
		/* The directory the serial file or socket goes in must be there and ours to write. */
		const char *path = spec + n, *slash = strrchr(path, '/');
		char dir[4096];
		struct stat st;
		if (!slash)
			strcpy(dir, ".");
		else if (slash == path)
			strcpy(dir, "/");
		else
			snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
		if (stat(dir, &st) < 0)
			die(FERRY_EXIT_CANTCREAT, "cannot create --serial %s: directory %s: %s", spec,
			    dir, errno == ENOENT ? "does not exist" : strerror(errno));
		if (!S_ISDIR(st.st_mode))
			die(FERRY_EXIT_CANTCREAT, "cannot create --serial %s: %s is not a directory",
			    spec, dir);
		if (access(dir, W_OK | X_OK) < 0)
			die(FERRY_EXIT_CANTCREAT, "cannot create --serial %s: %s: %s", spec, dir,
			    strerror(errno));
	}
}

/* Long options with no letter of their own. */
enum { OPT_BASE = 0x100, OPT_STANDBY_CHUNKS };

static void run_parse(int argc, char **argv, struct run_opts *o)
{
	static const struct option longopts[] = {
		{ "kernel", required_argument, NULL, 'k' },
		{ "cmdline", required_argument, NULL, 'a' },
		{ "initrd", required_argument, NULL, 'I' },
		{ "memory", required_argument, NULL, 'm' },
		{ "vcpus", required_argument, NULL, 'c' },
		{ "serial", required_argument, NULL, 's' },
		{ "disk", required_argument, NULL, 'd' },
		{ "net", required_argument, NULL, 'n' },
		{ "announce", required_argument, NULL, 'A' },
		{ "control", required_argument, NULL, 'C' },
		{ "incoming", required_argument, NULL, 'i' },
		{ "restore", required_argument, NULL, 'r' },
		{ "lazy", no_argument, NULL, 'L' },
		{ "test-hooks", no_argument, NULL, 'T' },
		{ "copy-storage", no_argument, NULL, 'S' },
		{ "standby", no_argument, NULL, 'B' },
		{ "failover", required_argument, NULL, 'F' },
		{ "failover-timeout", required_argument, NULL, 'O' },
		{ "base", required_argument, NULL, OPT_BASE },
		{ "x-standby-chunks", no_argument, NULL, OPT_STANDBY_CHUNKS },
		{ "prealloc", no_argument, NULL, 'P' },
		{ "cpu-model", required_argument, NULL, 'M' },
		{ "resume-timeout", required_argument, NULL, 'R' },
		{ "tls-creds", required_argument, NULL, 'K' },
		{ "tls-verify-peer", required_argument, NULL, 'V' },
		{ "tls-authz", required_argument, NULL, 'Z' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char why[512];
	uint64_t v;
	int c;

	memset(o, 0, sizeof(*o));
	o->mc = (struct machine_config){ .memory = 256ULL << 20, .vcpus = 1, .serial = "stdio" };
	o->mc.disks = o->disks;
	o->mc.nics = o->nics;
	net_announce_defaults(&o->announce);
	o->failover_mode = MIG_FAILOVER_AUTO;
	o->failover_ns = MIG_FAILOVER_DEFAULT_NS;
	bool failover_set = false;
	while ((c = getopt_long(argc, argv, "k:a:m:c:s:d:n:C:i:r:qvh", longopts, NULL)) != -1) {
		switch (c) {
		case 'd':
			if (o->mc.nr_disks == MACHINE_MAX_DISKS)
				die(FERRY_EXIT_USAGE, "at most %d --disk options", MACHINE_MAX_DISKS);
			if (block_config_parse(optarg, &o->disks[o->mc.nr_disks], why, sizeof(why)))
				die(FERRY_EXIT_USAGE, "bad --disk '%s': %s", optarg, why);
			o->mc.nr_disks++;
			break;
		case 'n':
			if (o->mc.nr_nics == MACHINE_MAX_NICS)
				die(FERRY_EXIT_USAGE, "at most %d --net options", MACHINE_MAX_NICS);
			if (net_config_parse(optarg, &o->nics[o->mc.nr_nics], why, sizeof(why)))
				die(FERRY_EXIT_USAGE, "bad --net '%s': %s", optarg, why);
			o->mc.nr_nics++;
			break;
		case 'A':
			if (net_announce_parse(optarg, &o->announce, why, sizeof(why)))
				die(FERRY_EXIT_USAGE, "bad --announce '%s': %s", optarg, why);
			break;
		case 'k': o->mc.kernel = optarg; break;
		case 'a': o->mc.cmdline = optarg; break;
		case 'I': o->mc.initrd = optarg; break;
		case 's': o->mc.serial = optarg; break;
		case 'C': o->control = optarg; break;
		case 'i': o->incoming = optarg; break;
		case 'r': o->restore = optarg; break;
		case 'L': o->lazy = true; break;
		case 'T': o->test_hooks = true; mig_scratch_allow(); break;
		case 'S': o->copy_storage = true; break;
		case 'B': o->standby = true; break;
		case OPT_STANDBY_CHUNKS: o->standby_chunks = true; break;
		case 'F':
			if (!strcmp(optarg, "auto"))
				o->failover_mode = MIG_FAILOVER_AUTO;
			else if (!strcmp(optarg, "manual"))
				o->failover_mode = MIG_FAILOVER_MANUAL;
			else
				die(FERRY_EXIT_USAGE, "--failover takes auto or manual");
			failover_set = true;
			break;
		case 'O':
			if (parse_duration(optarg, NSEC_PER_SEC, &o->failover_ns) ||
			    o->failover_ns < MIG_FAILOVER_MIN_NS || o->failover_ns > 3600 * NSEC_PER_SEC)
				die(FERRY_EXIT_USAGE, "bad --failover-timeout '%s': use a time from 100ms "
				    "to 1h, like 2s", optarg);
			failover_set = true;
			break;
		case OPT_BASE: o->base = optarg; break;
		case 'P': o->mc.prealloc = true; break;
		case 'M':
			if (x86_cpu_model_parse(optarg, &o->cpu_model, why, sizeof(why)))
				die(FERRY_EXIT_USAGE, "--cpu-model: %s", why);
			o->mc.cpu_model = &o->cpu_model;
			break;
		case 'K':
			if (!*optarg || strlen(optarg) >= sizeof(o->tls.dir))
				die(FERRY_EXIT_USAGE, "bad --tls-creds '%s': give a directory", optarg);
			strcpy(o->tls.dir, optarg);
			break;
		case 'Z':
			if (!*optarg || strlen(optarg) >= sizeof(o->tls.authz))
				die(FERRY_EXIT_USAGE, "bad --tls-authz '%s': give a file", optarg);
			strcpy(o->tls.authz, optarg);
			break;
		case 'V':
			if (strcmp(optarg, "on") && strcmp(optarg, "off"))
				die(FERRY_EXIT_USAGE, "--tls-verify-peer takes on or off");
			o->tls.verify_peer = strcmp(optarg, "on") ? MIG_TLS_VERIFY_OFF : MIG_TLS_VERIFY_ON;
			break;
		case 'R':
			if (parse_duration(optarg, NSEC_PER_SEC, &o->resume_timeout_ns) ||
			    !o->resume_timeout_ns || o->resume_timeout_ns > 86400 * NSEC_PER_SEC)
				die(FERRY_EXIT_USAGE, "bad --resume-timeout '%s': use a time like 60s", optarg);
			break;
		case 'q': log_set_level(LOG_ERROR); break;
		case 'v': log_set_level(LOG_DEBUG); break;
		case 'h': fputs(run_usage, stdout); exit(0);
		case 'm':
			if (parse_size(optarg, &o->mc.memory))
				die(FERRY_EXIT_USAGE, "bad --memory '%s': use a size like 512M or 1G",
				    optarg);
			if (o->mc.memory < GUEST_MIN_MEMORY || o->mc.memory > GUEST_MAX_MEMORY ||
			    o->mc.memory % (2ULL << 20))
				die(FERRY_EXIT_USAGE,
				    "--memory %s: must be a multiple of 2M from 16M to 1T", optarg);
			o->memory_set = true;
			break;
		case 'c':
			if (parse_uint(optarg, VM_MAX_VCPUS, &v) || v == 0)
				die(FERRY_EXIT_USAGE, "bad --vcpus '%s': use 1 to %d", optarg,
				    VM_MAX_VCPUS);
			o->mc.vcpus = (unsigned)v;
			o->vcpus_set = true;
			break;
		default:
			fputs("Try 'ferry run --help'.\n", stderr);
			exit(FERRY_EXIT_USAGE);
		}
	}
	if (optind < argc)
		die(FERRY_EXIT_USAGE, "unexpected argument '%s' (try 'ferry run --help')",
		    argv[optind]);
	for (unsigned i = 0; i < o->mc.nr_nics; i++)
		o->nics[i].announce = o->announce;
	if (o->mc.nr_disks + o->mc.nr_nics > MACHINE_VIRTIO_SLOTS)
		die(FERRY_EXIT_USAGE, "%u --disk and %u --net: at most %d virtio devices in all",
		    o->mc.nr_disks, o->mc.nr_nics, MACHINE_VIRTIO_SLOTS);
	run_check_paths(o);
	/*
	 * A missing image is the user's to fix, like a missing kernel: say so now.
	 * A restore checks its own (a disk copied into the file is written
	 * into an image that need not exist yet).
	 */
	for (unsigned i = 0; !o->restore && i < o->mc.nr_disks; i++)
		if (o->disks[i].kind == BLOCK_KIND_FILE && access(o->disks[i].path, o->disks[i].readonly ? R_OK : R_OK | W_OK) < 0)
			die(FERRY_EXIT_NOINPUT, "cannot open disk image %s: %s", o->disks[i].path,
			    strerror(errno));
	if (o->lazy && !o->restore)
		die(FERRY_EXIT_USAGE, "--lazy needs --restore FILE");
	if (o->copy_storage && !o->incoming)
		die(FERRY_EXIT_USAGE, "--copy-storage goes with --incoming");
	if (o->standby && (!o->incoming || !strncmp(o->incoming, "file:", 5)))
		die(FERRY_EXIT_USAGE, "--standby goes with --incoming tcp:HOST:PORT or unix:PATH");
	if (o->standby_chunks && (!o->standby || !o->test_hooks))
		die(FERRY_EXIT_USAGE, "--x-standby-chunks goes with --standby and --test-hooks");
	if (failover_set && !o->standby)
		die(FERRY_EXIT_USAGE, "--failover and --failover-timeout go with --standby");
	/* A standby's disks are its own copies, written only at each checkpoint. */
	if (o->standby && o->mc.nr_disks && !o->copy_storage)
		die(FERRY_EXIT_USAGE, "--standby with disks needs --copy-storage and an image of its "
		    "own per disk (--disk path=...): shared storage is refused, as after a failover "
		    "the disk would hold the primary's writes newer than the checkpoint "
		    "(docs/replication.md)");
	if (o->base && (!o->incoming || !mig_channel_uri_return_path(o->incoming)))
		die(FERRY_EXIT_USAGE, "--base goes with --incoming tcp:HOST:PORT or unix:PATH "
		    "(the digests go back to the source; a file has no way back)");
	if (o->restore) {
		if (o->incoming || o->mc.kernel || o->mc.cmdline || o->memory_set || o->vcpus_set ||
		    o->mc.prealloc || o->tls.dir[0] || o->tls.authz[0] ||
		    o->tls.verify_peer != MIG_TLS_VERIFY_AUTO)
			die(FERRY_EXIT_USAGE, "--restore takes the VM from the file; drop --incoming, "
			    "--kernel, --cmdline, --memory, --vcpus, --prealloc and --tls-*");
		return;
	}
	if (o->incoming) {
		if (o->mc.kernel || o->mc.cmdline || o->mc.initrd)
			die(FERRY_EXIT_USAGE, "--incoming takes the kernel and its command line from "
			    "the stream; drop --kernel, --initrd and --cmdline");
		if (o->tls.authz[0] && !o->tls.dir[0])
			die(FERRY_EXIT_USAGE, "--tls-authz needs --tls-creds DIR");
		if (o->tls.dir[0] && mig_tls_check(&o->tls, true, why, sizeof(why)))
			die(FERRY_EXIT_USAGE, "%s", why);
		if (o->mc.prealloc && !o->memory_set)
			die(FERRY_EXIT_USAGE, "--prealloc with --incoming needs --memory SIZE: "
			    "the size of the VM that will arrive");
		if (o->copy_storage) {
			for (unsigned i = 0; i < o->mc.nr_disks; i++)
				if (o->disks[i].kind != BLOCK_KIND_FILE || o->disks[i].readonly)
					die(FERRY_EXIT_USAGE, "--copy-storage writes each disk's image: "
					    "give writable path= disks");
			if (!o->mc.nr_disks)
				die(FERRY_EXIT_USAGE, "--copy-storage needs the target images (--disk)");
			mig_block_expect();
		}
		return;
	}
	if (o->tls.dir[0] || o->tls.authz[0] || o->tls.verify_peer != MIG_TLS_VERIFY_AUTO)
		die(FERRY_EXIT_USAGE, "--tls-creds, --tls-authz and --tls-verify-peer go with --incoming "
		    "(for a migration away: 'ferry migrate ... --tls-creds DIR')");
	if (!o->mc.kernel)
		die(FERRY_EXIT_USAGE, "--kernel FILE or --incoming URI is required "
		    "(try 'ferry run --help')");
	struct stat st;
	if (access(o->mc.kernel, R_OK) < 0 || stat(o->mc.kernel, &st) < 0)
		die(FERRY_EXIT_NOINPUT, "cannot read kernel %s: %s", o->mc.kernel, strerror(errno));
	/* A FIFO would block the load forever, a device read without end. */
	if (!S_ISREG(st.st_mode))
		die(FERRY_EXIT_NOINPUT, "kernel %s is not a regular file: give the kernel image "
		    "itself", o->mc.kernel);
	if (o->mc.initrd && (access(o->mc.initrd, R_OK) < 0 || stat(o->mc.initrd, &st) < 0))
		die(FERRY_EXIT_NOINPUT, "cannot read initrd %s: %s", o->mc.initrd, strerror(errno));
	if (o->mc.initrd && !S_ISREG(st.st_mode))
		die(FERRY_EXIT_NOINPUT, "initrd %s is not a regular file", o->mc.initrd);
}

static int run_exit_code(int err)
{
	switch (-err) {
	case ENOENT: case EACCES: case ENOTSUP: case EBUSY: return FERRY_EXIT_UNAVAILABLE;
	case ENOEXEC: case ERANGE: case E2BIG: return FERRY_EXIT_DATAERR;
	case EINVAL: return FERRY_EXIT_USAGE;
	default: return FERRY_EXIT_OSERR;
	}
}

/* Wait for the VM to stop or a signal to arrive; returns the exit status. */
static int run_wait(struct machine *m, int sfd)
{
	struct vm *vm = &m->vm;

	for (;;) {
		struct pollfd p[2] = {
			{ .fd = sfd, .events = POLLIN },
			{ .fd = vm->stop_efd, .events = POLLIN },
		};
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[0].revents & POLLIN) {
			struct signalfd_siginfo si;
			if (read(sfd, &si, sizeof(si)) == sizeof(si))
				pr_info("%s: shutting down", strsignal((int)si.ssi_signo));
			vm_request_stop(vm, VM_STOP_REQUESTED, 0);
		}
		if (p[1].revents & POLLIN)
			break;
	}
	switch (vm_wait_stopped(vm)) {
	case VM_STOP_MIGRATED:
		return FERRY_EXIT_OK;
	case VM_STOP_LOST:
		return FERRY_EXIT_VM_LOST;
	case VM_STOP_GUEST_EXIT:
		return vm->guest_status;
	case VM_STOP_GUEST_CRASH:
		return FERRY_EXIT_GUEST_CRASH;
	default:
		return FERRY_EXIT_OK;
	}
}

/* Serve the control API, if asked for.  Returns 0 or -errno. */
static int run_serve(struct machine *m, struct migration *mig, struct control_server *cs,
		     const struct run_opts *o)
{
	int err = 0;

	if (o->control)
		err = control_server_open(cs, o->control, m, mig, o->test_hooks);
	if (!err && o->control)
		err = control_server_start(cs);
	return err;
}

static int run_start(struct machine *m, struct migration *mig, struct control_server *cs,
		     const struct run_opts *o)
{
	int err = run_serve(m, mig, cs, o);

	return err ? err : vm_start(&m->vm);
}

/* What the main flow owns, for the post-copy start callback. */
struct run_ctx {
	struct machine *m;
	struct mig_incoming *inc;
	struct migration *mig;
	struct control_server *cs;
	const struct run_opts *o;
	int sfd;			/* signalfd of the shutdown signals */
};

/* Post-copy starts the guest with pages still missing: say so before the API opens. */
static int run_start_cb(void *opaque)
{
	struct run_ctx *c = opaque;
	/* The source released the disks before RUN: lock them, or do not start (-EBUSY). */
	int err = machine_activate(c->m, c->inc->why, sizeof(c->inc->why));

	if (err) {
		/* The RESULT says "cannot start the guest" and -EBUSY; the log says why. */
		pr_err("%s; the guest was not started here", c->inc->why);
		return err;
	}
	/*
	 * Then the devices look at their rings.  Not before activating: an I/O
	 * thread reading a ring on a page not here yet faults while holding
	 * its device's lock, which activation takes, and only the receiving
	 * thread (ours) can bring the page.
	 */
	machine_devices_resume(c->m);
	migration_set_incoming_postcopy(c->mig, true);
	return run_start(c->m, c->mig, c->cs, c->o);
}

static const char *run_signame(int sig)
{
	switch (sig) {
	case SIGINT: return "SIGINT";
	case SIGTERM: return "SIGTERM";
	case SIGHUP: return "SIGHUP";
	default: return "a signal";
	}
}

/* The pending shutdown signal, taken from the signalfd; 0 if none. */
static int run_take_signal(int sfd)
{
	struct signalfd_siginfo si;

	return read(sfd, &si, sizeof(si)) == sizeof(si) ? (int)si.ssi_signo : 0;
}

/*
 * Signal `sig` ended the incoming migration.  Say so, here and to the
 * source, which resumes its guest unless post-copy already started it
 * here.  Returns the exit status.
 */
static int run_incoming_interrupted(struct run_ctx *ctx, struct mig_incoming *inc, int sig)
{
	char why[160];

	if (inc->guest_started) {
		/* Pages are missing here and the source no longer runs it. */
		snprintf(why, sizeof(why), "interrupted by %s after the guest started here in "
			 "post-copy; the VM is lost", run_signame(sig));
		pr_err("%s", why);
		mig_incoming_reply(inc, -EINTR, why);
		vm_request_stop(&ctx->m->vm, VM_STOP_GUEST_CRASH, 0);
		return FERRY_EXIT_VM_LOST;
	}
	snprintf(why, sizeof(why), "interrupted by %s; the guest was not started here",
		 run_signame(sig));
	pr_err("%s", why);
	mig_incoming_reply(inc, -EINTR, why);
	return FERRY_EXIT_SIGNAL + sig;
}

/*
 * Receive the VM by migration.  Returns 0 when m is ready (or, after
 * post-copy, already running), else the exit status.
 */
static int run_incoming(struct run_ctx *ctx, struct mig_incoming *inc)
{
	const struct run_opts *o = ctx->o;
	struct mig_incoming_opts io = {
		.uri = o->incoming, .serial = o->mc.serial,
		.tls = o->tls.dir[0] ? &o->tls : NULL,
		.disks = o->mc.disks, .nr_disks = o->mc.nr_disks,
		.own_disks = o->copy_storage,
		.nics = o->mc.nics, .nr_nics = o->mc.nr_nics,
		.max_memory = o->memory_set ? o->mc.memory : 0,
		.max_vcpus = o->vcpus_set ? o->mc.vcpus : 0,
		.cpu_model = o->mc.cpu_model,
		.accept_timeout_ms = -1, .io_timeout_ms = 30000,
		.start_guest = run_start_cb, .start_opaque = ctx,
		.resume_timeout_ms = (int)(o->resume_timeout_ns / 1000000),
		/* A shutdown signal abandons the migration at once, not after it. */
		.intr_fd = ctx->sfd,
		.standby = o->standby, .standby_chunks = o->standby_chunks,
		.failover_mode = (int)o->failover_mode, .failover_ns = o->failover_ns,
	};
	struct guest_memory pre = { .fd = -1 };
	struct savefile base = { .fd = -1 };
	int err = 0, sig;
	char why[300];

	if (o->base) {
		/* Checked before listening: a wrong file is the operator's to hear of now. */
		err = savefile_open(&base, o->base, why, sizeof(why));
		if (err) {
			pr_err("--base: %s", why);
			return err == -ENOENT ? FERRY_EXIT_NOINPUT : err == -ENOMEM ? FERRY_EXIT_OSERR
			       : err == -EPROTO || err == -EPROTONOSUPPORT ? FERRY_EXIT_DATAERR
			       : FERRY_EXIT_USAGE;
		}
		io.base = &base;
	}

	if (o->mc.prealloc) {
		/* Before listening: the migration must not wait for this. */
		err = guest_memory_create(&pre, o->mc.memory);
		if (!err)
			err = guest_memory_prealloc(&pre, false);
		if (err) {
			pr_err("cannot preallocate %llu MiB: %s", (unsigned long long)(o->mc.memory >> 20),
			       strerror(-err));
			guest_memory_destroy(&pre);
			savefile_close(&base);
			return FERRY_EXIT_OSERR;
		}
		io.premade = &pre;
	}
	err = mig_incoming_receive(inc, &io, ctx->m);
	savefile_close(&base);	/* its pages were read at the handshake */
	migration_set_incoming_postcopy(ctx->mig, false);	/* every page is in, or lost */
	if (pre.fd >= 0)
		guest_memory_destroy(&pre);	/* not taken over: the migration failed early */
	if (!err)
		return 0;
	sig = err == -EINTR ? run_take_signal(ctx->sfd) : 0;
	if (sig)
		return run_incoming_interrupted(ctx, inc, sig);
	if (inc->guest_started) {
		/* Pages are missing and the source can no longer run it either. */
		pr_err("post-copy failed after the guest started here: %s; the VM is lost", inc->why);
		mig_incoming_reply(inc, err, inc->why);
		vm_request_stop(&ctx->m->vm, VM_STOP_GUEST_CRASH, 0);
		return FERRY_EXIT_VM_LOST;
	}
	pr_err("incoming migration failed: %s; the guest was not started here", inc->why);
	mig_incoming_reply(inc, err, inc->why);
	switch (-err) {
	case EPIPE: case ETIMEDOUT: case ECONNRESET: return FERRY_EXIT_IOERR;
	case EINVAL: case EADDRINUSE: case ENOTSOCK: case EACCES: case EISDIR:
	case ENXIO:	/* tcp: the host name does not resolve */
		return FERRY_EXIT_USAGE;
	case ENOENT: return FERRY_EXIT_NOINPUT;		/* --incoming file:PATH, no PATH */
	default: return err == -ENOMEM ? FERRY_EXIT_OSERR : FERRY_EXIT_DATAERR;
	}
}

/*
 * A pre-copy arrived whole: serve the control API (status, migrate-resolve)
 * while the source decides, and start the guest only on its GO.  Returns 0
 * once the guest runs here, else the exit status (the guest never ran).
 */
static int run_commit(struct run_ctx *ctx, struct mig_incoming *inc, int sfd)
{
	int err = run_serve(ctx->m, ctx->mig, ctx->cs, ctx->o);

	if (err) {
		mig_incoming_reply(inc, err, "the destination could not serve its control socket");
		return run_exit_code(err);
	}
	err = mig_incoming_commit(inc, &ctx->mig->commit, sfd);
	/* GO: the source released the disks; lock them here before any vCPU runs. */
	if (!err && machine_activate(ctx->m, inc->why, sizeof(inc->why))) {
		pr_err("%s; the guest was not started here", inc->why);
		mig_incoming_reply(inc, -EBUSY, inc->why);
		return FERRY_EXIT_UNAVAILABLE;
	}
	if (!err) {
		/* Not before GO: a device taking up requests writes the shared disk. */
		machine_devices_resume(ctx->m);
		err = vm_start(&ctx->m->vm);
		if (err) {
			/* Whatever vCPU did start stops before the source hears no. */
			vm_request_stop(&ctx->m->vm, VM_STOP_GUEST_CRASH, 0);
			vm_wait_stopped(&ctx->m->vm);
		}
		if (err) {
			mig_incoming_reply(inc, err, "the destination could not start the guest");
			return run_exit_code(err);
		}
		/* The guest runs here: frames that still reached the source follow it. */
		if (!mig_incoming_result(inc, 0, "ok"))
			migration_set_incoming_frames_after_go(ctx->mig, mig_incoming_epilogue(inc,
							       ctx->m, sfd));
		mig_incoming_drop(inc);
		return 0;
	}
	int sig = err == -EINTR ? run_take_signal(sfd) : 0;
	if (sig)
		return run_incoming_interrupted(ctx, inc, sig);
	pr_err("incoming migration failed: %s; the guest was not started here", inc->why);
	mig_incoming_reply(inc, err, inc->why);
	/* -ENODATA: a saved file without its GO, an incomplete image. */
	return err == -EPROTO || err == -ENODATA ? FERRY_EXIT_DATAERR : FERRY_EXIT_IOERR;
}

/*
 * The initial copy of a replication arrived: stand by (serve the control
 * API: status, failover, quit), then resume the guest here on failover.
 * Returns 0 once the guest runs here, else the exit status with
 * *no_guest set (the guest never ran: stood down, stopped, failed).
 */
static int run_standby(struct run_ctx *ctx, struct mig_incoming *inc, int sfd, bool *no_guest)
{
	const struct run_opts *o = ctx->o;
	struct mig_incoming_opts io = {
		.uri = o->incoming, .intr_fd = sfd, .standby = true,
		.failover_mode = (int)o->failover_mode, .failover_ns = o->failover_ns,
	};
	int err = run_serve(ctx->m, ctx->mig, ctx->cs, o);

	*no_guest = true;
	if (err) {
		mig_incoming_reply(inc, err, "the standby could not serve its control socket");
		return run_exit_code(err);
	}
	err = mig_standby_run(inc, &io, &ctx->mig->commit);
	if (!err) {
		/* The primary is gone (or the operator said so): this copy runs now. */
		mig_incoming_drop(inc);
		machine_devices_resume(ctx->m);
		err = vm_start(&ctx->m->vm);
		if (err) {
			pr_err("the standby cannot start the guest: %s", strerror(-err));
			vm_request_stop(&ctx->m->vm, VM_STOP_GUEST_CRASH, 0);
			vm_wait_stopped(&ctx->m->vm);
			return run_exit_code(err);
		}
		pr_info("standby: the guest runs here now");
		*no_guest = false;
		return 0;
	}
	if (err == -ECONNABORTED) {
		pr_info("%s", inc->why);
		mig_incoming_reply(inc, 0, "the standby stood down");
		return FERRY_EXIT_OK;
	}
	if (err == -ECANCELED) {
		pr_info("standby stopped by the operator; the guest was not started here");
		mig_incoming_reply(inc, err, inc->why);
		return FERRY_EXIT_OK;
	}
	int sig = err == -EINTR ? run_take_signal(sfd) : 0;
	if (sig)
		return run_incoming_interrupted(ctx, inc, sig);
	pr_err("standby failed: %s; the guest was not started here", inc->why);
	mig_incoming_reply(inc, err, inc->why);
	return err == -EPROTO ? FERRY_EXIT_DATAERR : FERRY_EXIT_IOERR;
}

int cli_run(int argc, char **argv)
{
	struct control_server cs = { .listen_fd = -1, .wake_fd = { -1, -1 } };
	struct mig_incoming inc = { 0 };
	struct restore_state rs = { .sf.fd = -1 };
	struct migration mig;
	struct run_ctx ctx;
	struct run_opts o;
	struct machine *m;
	sigset_t sigs;
	int err = 0, status = 0, sfd;
	bool no_guest = false;

	run_parse(argc, argv, &o);
	/* Block the shutdown signals in every thread; the main one reads them. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	sfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);

	m = calloc(1, sizeof(*m));
	if (!m || sfd < 0)
		die(FERRY_EXIT_OSERR, "out of memory");
	migration_init(&mig, m);
	ctx = (struct run_ctx){ .m = m, .inc = &inc, .mig = &mig, .cs = &cs, .o = &o, .sfd = sfd };
	if (o.incoming) {
		status = run_incoming(&ctx, &inc);
		if (status && !inc.guest_started) {
			migration_destroy(&mig);
			free(m);
			close(sfd);
			return status;
		}
	} else if (o.restore) {
		struct restore_opts ro = {
			.file = o.restore, .lazy = o.lazy, .serial = o.mc.serial,
			.disks = o.disks, .nr_disks = o.mc.nr_disks,
			.nics = o.nics, .nr_nics = o.mc.nr_nics, .announce = &o.announce,
			.cpu_model = o.mc.cpu_model,
		};
		status = restore_machine(m, &mig, &ro, &rs);
		if (status) {
			migration_destroy(&mig);
			free(m);
			close(sfd);
			return status;
		}
	} else {
		err = machine_create(m, &o.mc);
	}
	if (o.incoming && !status && !inc.guest_started && o.standby)
		status = run_standby(&ctx, &inc, sfd, &no_guest);
	else if (o.incoming && !status && !inc.guest_started)
		status = run_commit(&ctx, &inc, sfd);
	else if (!err && !status && !inc.guest_started)
		err = run_start(m, &mig, &cs, &o);
	else if (o.incoming && !status) {
		/* Post-copy: the guest runs here; frames that still reach the source follow it. */
		if (!mig_incoming_result(&inc, 0, "ok"))
			migration_set_incoming_frames_after_go(&mig, mig_incoming_epilogue(&inc, m, sfd));
		mig_incoming_drop(&inc);
	}
	if (err)
		status = run_exit_code(err);
	else if (!status && !no_guest)
		status = run_wait(m, sfd);
	else if (vm_get_state(&m->vm) != VM_STATE_CREATED)
		vm_wait_stopped(&m->vm);
	/* No new commands, then no migration thread, then no clients to tell. */
	control_server_stop(&cs);
	/* The vCPUs stopped: no fault waits for the file; before mig, which its end tells. */
	restore_finish(&rs);
	migration_destroy(&mig);
	control_server_close(&cs);
	machine_destroy(m);
	free(m);
	close(sfd);
	return status;
}
