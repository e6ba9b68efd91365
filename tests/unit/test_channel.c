/* The channel table: URI parsing and the file channel's one-way life. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "migration/channel/channel.h"
#include "migration/stream.h"

static int parse(const char *uri, struct mig_uri *u, char *why)
{
	why[0] = '\0';
	return mig_channel_parse(uri, u, why, 256);
}

static void test_good_uris(void **state)
{
	struct mig_uri u;
	char why[256];

	assert_int_equal(parse("tcp:127.0.0.1:4444", &u, why), 0);
	assert_int_equal(u.kind, MIG_CHANNEL_TCP);
	assert_string_equal(u.addr, "127.0.0.1:4444");
	assert_true(u.ops->return_path);
	assert_int_equal(parse("tcp:dst.example:65535", &u, why), 0);
	assert_int_equal(parse("tcp:[::1]:1", &u, why), 0);
	assert_string_equal(u.addr, "[::1]:1");

	assert_int_equal(parse("unix:/tmp/mig.sock", &u, why), 0);
	assert_int_equal(u.kind, MIG_CHANNEL_UNIX);
	assert_string_equal(u.addr, "/tmp/mig.sock");
	assert_true(u.ops->return_path);

	assert_int_equal(parse("file:/var/lib/vm.img", &u, why), 0);
	assert_int_equal(u.kind, MIG_CHANNEL_FILE);
	assert_string_equal(u.addr, "/var/lib/vm.img");
	assert_false(u.ops->return_path);
	/* A colon in a path is just part of it. */
	assert_int_equal(parse("file:a:b", &u, why), 0);
	assert_string_equal(u.addr, "a:b");

	assert_true(mig_channel_uri_return_path("unix:/x"));
	assert_false(mig_channel_uri_return_path("file:/x"));
	assert_false(mig_channel_uri_return_path("bogus"));
}

/* Each bad URI fails with -EINVAL and a message containing `want`. */
static void bad(const char *uri, const char *want)
{
	struct mig_uri u;
	char why[256];

	assert_int_equal(parse(uri, &u, why), -EINVAL);
	if (!strstr(why, want))
		fail_msg("'%s': message '%s' lacks '%s'", uri, why, want);
}

static void test_bad_uris(void **state)
{
	bad("", "no migration URI");
	bad("/tmp/x", "not a migration URI: use tcp:HOST:PORT, unix:PATH or file:PATH");
	bad("ftp:host:21", "unknown migration URI scheme 'ftp'");
	bad("TCP:h:1", "unknown migration URI scheme 'TCP'");
	bad("tcp:", "tcp:HOST:PORT");
	bad("tcp:host", "tcp:HOST:PORT");
	bad("tcp:host:", "tcp:HOST:PORT");
	bad("tcp::4444", "tcp:HOST:PORT");
	bad("tcp:host:0", "1..65535");
	bad("tcp:host:65536", "1..65535");
	bad("tcp:host:12ab", "1..65535");
	bad("tcp:host:-1", "1..65535");
	bad("tcp:host:+80", "1..65535");
	bad("tcp:::1:4444", "brackets");
	bad("tcp:[]:4444", "tcp:HOST:PORT");
	bad("unix:", "the socket path is empty");
	bad("file:", "the path is empty");
	bad("file:/tmp/", "names a directory");

	char longpath[200];
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[sizeof(longpath) - 1] = '\0';
	char uri[256];
	snprintf(uri, sizeof(uri), "unix:%s", longpath);
	bad(uri, "shorter than 108 bytes");

	/* An address past the limit is refused before any scheme looks at it. */
	char *huge = malloc(MIG_CHANNEL_ADDR_MAX + 16);
	assert_non_null(huge);
	strcpy(huge, "file:");
	memset(huge + 5, 'x', MIG_CHANNEL_ADDR_MAX + 1);
	huge[5 + MIG_CHANNEL_ADDR_MAX + 1] = '\0';
	bad(huge, "longer than");
	free(huge);
}

/* A save: written to PATH.tmp, named PATH only by finish; read back whole. */
static void test_file_roundtrip(void **state)
{
	char dir[] = "/tmp/ferry-chan.XXXXXX", path[128], tmp[140], uri[160], why[256];
	struct mig_channel *ch;
	struct mig_listener l;
	struct mig_stream s;
	struct stat st;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/vm.img", dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	snprintf(uri, sizeof(uri), "file:%s", path);

	assert_int_equal(mig_channel_open(uri, NULL, 1000, &ch, why, sizeof(why)), 0);
	assert_false(mig_channel_has_return_path(ch));
	assert_int_equal(mig_stream_init(&s, ch, 4096), 0);
	mig_stream_put_u64(&s, 0x1122334455667788ULL);
	assert_int_equal(mig_stream_flush(&s), 0);
	assert_int_equal(stat(tmp, &st), 0);
	assert_int_not_equal(stat(path, &st), 0);	/* not under its name yet */
	/* Nothing ever comes back: a wait for it is a sleep. */
	assert_int_equal(mig_stream_wait_readable(&s, 10, NULL, 0), 0);
	assert_int_equal(mig_stream_finish(&s), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 8);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_not_equal(stat(tmp, &st), 0);
	mig_stream_destroy(&s);
	assert_int_equal(stat(path, &st), 0);		/* finished: kept */

	/* Read it twice: an image, not a one-shot. */
	for (int round = 0; round < 2; round++) {
		assert_int_equal(mig_channel_listen(uri, NULL, &l, why, sizeof(why)), 0);
		assert_int_equal(mig_channel_accept(&l, 0, -1, &ch), 0);
		mig_listener_close(&l);
		assert_int_equal(stat(path, &st), 0);	/* closing a file listener keeps it */
		assert_int_equal(mig_stream_init(&s, ch, 4096), 0);
		assert_true(mig_stream_get_u64(&s) == 0x1122334455667788ULL);
		assert_int_equal(mig_stream_error(&s), 0);
		(void)mig_stream_get_u8(&s);
		assert_int_equal(mig_stream_error(&s), -ENODATA);
		assert_non_null(strstr(s.why, "truncated"));
		mig_stream_destroy(&s);
	}
	unlink(path);
	rmdir(dir);
}

/* A save that does not finish leaves nothing behind; a missing file says so. */
static void test_file_unfinished(void **state)
{
	char dir[] = "/tmp/ferry-chan.XXXXXX", path[128], tmp[140], uri[160], why[256];
	struct mig_channel *ch;
	struct mig_listener l;
	struct stat st;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/vm.img", dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	snprintf(uri, sizeof(uri), "file:%s", path);
	assert_int_equal(mig_channel_open(uri, NULL, 1000, &ch, why, sizeof(why)), 0);
	assert_int_equal(mig_channel_write(ch, "abc", 3), 3);
	mig_channel_shutdown(ch, true, true);
	assert_int_equal(mig_channel_write(ch, "abc", 3), -EPIPE);
	assert_int_equal(mig_channel_finish(ch), -EPIPE);
	mig_channel_close(ch);
	assert_int_not_equal(stat(tmp, &st), 0);
	assert_int_not_equal(stat(path, &st), 0);

	assert_int_equal(mig_channel_listen(uri, NULL, &l, why, sizeof(why)), -ENOENT);
	assert_non_null(strstr(why, path));
	snprintf(uri, sizeof(uri), "file:%s", dir);
	assert_int_equal(mig_channel_open(uri, NULL, 1000, &ch, why, sizeof(why)), -EISDIR);
	assert_int_equal(mig_channel_listen(uri, NULL, &l, why, sizeof(why)), -EISDIR);
	rmdir(dir);
}

/*
 * A save's temporary name planted as a symlink (a shared directory, ferry
 * as root) is refused, not followed: guest RAM never lands in its target.
 */
static void test_file_tmp_symlink(void **state)
{
	char dir[] = "/tmp/ferry-chan.XXXXXX", path[128], tmp[140], victim[140], uri[160];
	char why[256], buf[8] = "";
	struct mig_channel *ch;
	int fd;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/vm.img", dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	snprintf(victim, sizeof(victim), "%s/victim", dir);
	fd = open(victim, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "keep", 4), 4);
	close(fd);
	assert_int_equal(symlink(victim, tmp), 0);
	snprintf(uri, sizeof(uri), "file:%s", path);
	assert_int_equal(mig_channel_open(uri, NULL, 1000, &ch, why, sizeof(why)), -ELOOP);
	fd = open(victim, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(read(fd, buf, sizeof(buf) - 1), 4);
	close(fd);
	assert_string_equal(buf, "keep");
	unlink(tmp);
	unlink(victim);
	rmdir(dir);
}

/* The interrupt fds end a wait on a channel that has nothing to say. */
static void test_wait_intr(void **state)
{
	int sv[2], pfd[2];
	struct mig_channel *ch;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(pipe(pfd), 0);
	assert_int_equal(mig_channel_socket(sv[0], &ch), 0);
	int fds[2] = { -1, pfd[0] };
	assert_int_equal(mig_channel_wait(ch, POLLIN, 0, fds, 2), 0);
	assert_int_equal(write(pfd[1], "x", 1), 1);
	assert_int_equal(mig_channel_wait(ch, POLLIN, 1000, fds, 2), (int)MIG_WAIT_INTR(1));
	assert_int_equal(write(sv[1], "y", 1), 1);
	assert_int_equal(mig_channel_wait(ch, POLLIN, 1000, fds, 2),
			 (int)(MIG_WAIT_INTR(1) | MIG_WAIT_CHANNEL));
	mig_channel_close(ch);
	close(sv[1]);
	close(pfd[0]);
	close(pfd[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_uris),
		cmocka_unit_test(test_bad_uris),
		cmocka_unit_test(test_file_roundtrip),
		cmocka_unit_test(test_file_unfinished),
		cmocka_unit_test(test_file_tmp_symlink),
		cmocka_unit_test(test_wait_intr),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
