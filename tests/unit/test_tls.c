/*
 * The TLS channel (src/migration/channel/tls.c) end to end over loopback,
 * with the credentials scripts/tls-certs.sh makes: a stream through it both
 * ways (small socket buffers, so that writes stop half-way and records wait
 * inside GnuTLS), and every refusal: wrong CA, wrong name, expired, not yet
 * valid, no client certificate, plain against TLS both ways, PSK mismatch.
 * Each refusal must say why, and the destination must go on waiting: a good
 * source after a bad one still gets through.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "migration/channel/channel.h"
#include "migration/channel/tls.h"
#include "migration/stream.h"

#define DATA_BYTES (6u << 20)
#define MARKER 0x0123456789abcdefULL
#define READY 0x5245414459ULL
#define HELLO "FERRYMIG\x02\0\0\0"

static char certs[64];		/* the credentials' root, made once */
static const char *next_authz;	/* the next destination's --tls-authz file, if any */
static int port_base;

/* A destination: listens in the test's thread, accepts and checks in its own. */
struct dest {
	char uri[160];
	struct mig_tls tls;
	struct mig_listener l;
	int intr[2];			/* written: stop waiting */
	pthread_t th;
	int err;			/* accept's result */
	bool data_ok;			/* every byte came as sent, the marker went back */
	bool plain_reply;		/* plain: answer with junk instead of reading */
};

static uint8_t pattern(size_t i)
{
	return (uint8_t)(i * 7 + i / 4093);
}

static void tls_dir(struct mig_tls *t, const char *name)
{
	memset(t, 0, sizeof(*t));
	if (name)
		snprintf(t->dir, sizeof(t->dir), "%s/%s", certs, name);
}

static void *dest_thread(void *arg)
{
	struct dest *d = arg;
	struct mig_channel *ch;
	struct mig_stream s;
	uint8_t *buf;

	d->err = mig_channel_accept(&d->l, 20000, d->intr[0], &ch);
	if (d->err)
		return NULL;
	if (d->plain_reply) {
		/* A destination without TLS: it reads the "header", finds junk, says so. */
		char junk[64];
		ssize_t n = mig_channel_read(ch, junk, sizeof(junk));
		(void)n;
		(void)!mig_channel_write(ch, "\x11\0\0\0\x05\0\0\0nope!", 13);
		mig_channel_close(ch);
		return NULL;
	}
	assert_int_equal(mig_stream_init(&s, ch, 1 << 16), 0);
	s.timeout_ms = 10000;
	mig_stream_set_buffers(&s, 16384, 0);
	/* As a migration does: a small header, an answer, then the bulk. */
	char hello[12];
	mig_stream_get(&s, hello, sizeof(hello));
	mig_stream_put_u64(&s, READY);
	mig_stream_flush(&s);
	buf = malloc(DATA_BYTES);
	mig_stream_get(&s, buf, DATA_BYTES);
	bool same = !mig_stream_error(&s);
	for (size_t i = 0; same && i < DATA_BYTES; i++)
		same = buf[i] == pattern(i);
	free(buf);
	mig_stream_put_u64(&s, MARKER);
	d->data_ok = same && !mig_stream_flush(&s);
	/* Until the source is done reading: its close ends this. */
	(void)mig_stream_get_u8(&s);
	mig_stream_destroy(&s);
	return NULL;
}

static void dest_start(struct dest *d, const char *scheme, const char *server_dir,
		       enum mig_tls_verify verify)
{
	char why[512];

	int err = -EADDRINUSE;

	memset(d, 0, sizeof(*d));
	tls_dir(&d->tls, server_dir);
	d->tls.verify_peer = verify;
	if (next_authz)
		snprintf(d->tls.authz, sizeof(d->tls.authz), "%s/%s", certs, next_authz);
	next_authz = NULL;
	assert_int_equal(pipe(d->intr), 0);
	/* A port another test took: try the next (a few times). */
	for (int i = 0; i < 8 && err == -EADDRINUSE; i++) {
		if (!strcmp(scheme, "tcp"))
			snprintf(d->uri, sizeof(d->uri), "tcp:127.0.0.1:%d", port_base++);
		else
			snprintf(d->uri, sizeof(d->uri), "unix:%s/dest.sock", certs);
		err = mig_channel_listen(d->uri, &d->tls, &d->l, why, sizeof(why));
	}
	if (err)
		fail_msg("listen on %s: %s", d->uri, why);
	assert_int_equal(pthread_create(&d->th, NULL, dest_thread, d), 0);
}

/* Stop waiting (if it still does), join; returns accept's result. */
static int dest_end(struct dest *d)
{
	assert_int_equal(write(d->intr[1], "x", 1), 1);
	pthread_join(d->th, NULL);
	mig_listener_close(&d->l);
	close(d->intr[0]);
	close(d->intr[1]);
	return d->err;
}

/*
 * A source: sends the pattern, expects the marker back.  0, or -errno with
 * why (the channel's or the stream's reason).
 */
static int source(const struct dest *d, const char *client_dir, const char *hostname,
		  char *why, size_t len)
{
	struct mig_channel *ch;
	struct mig_tls t;
	struct mig_stream s;
	int err;

	tls_dir(&t, client_dir);
	if (hostname)
		snprintf(t.hostname, sizeof(t.hostname), "%s", hostname);
	why[0] = '\0';
	err = mig_channel_open(d->uri, &t, 5000, &ch, why, len);
	if (err)
		return err;
	assert_int_equal(mig_stream_init(&s, ch, 1 << 16), 0);
	s.timeout_ms = 10000;
	mig_stream_set_buffers(&s, 16384, 0);
	mig_stream_put(&s, HELLO, 12);
	mig_stream_flush(&s);
	if (mig_stream_get_u64(&s) != READY && !mig_stream_error(&s))
		mig_stream_fail(&s, -EPROTO, "no READY");
	uint8_t *buf = malloc(DATA_BYTES);
	for (size_t i = 0; i < DATA_BYTES; i++)
		buf[i] = pattern(i);
	/* In pieces of odd sizes, and one large write straight from the buffer. */
	mig_stream_put(&s, buf, 1);
	mig_stream_put(&s, buf + 1, 4095);
	mig_stream_put(&s, buf + 4096, DATA_BYTES - 4096);
	free(buf);
	mig_stream_flush(&s);
	uint64_t m = mig_stream_get_u64(&s);
	err = mig_stream_error(&s);
	if (!err && m != MARKER)
		err = -EPROTO;
	snprintf(why, len, "%s", s.why);
	mig_stream_destroy(&s);
	return err;
}

static void expect_why(const char *why, const char *want)
{
	if (!strstr(why, want))
		fail_msg("reason '%s' does not say '%s'", why, want);
}

/* Good credentials: the data crosses whole, over tcp (IP in the SAN) and unix (a name given). */
static void test_x509_ok(void **state)
{
	static const char *const schemes[] = { "tcp", "unix" };
	char why[512];
	struct dest d;

	for (int i = 0; i < 2; i++) {
		dest_start(&d, schemes[i], "server", MIG_TLS_VERIFY_AUTO);
		int err = source(&d, "client", i ? "localhost" : NULL, why, sizeof(why));
		if (err)
			fail_msg("%s: %s", schemes[i], why);
		assert_int_equal(dest_end(&d), 0);
		assert_true(d.data_ok);
	}
}

/* The destination's end of a pair: accepted in a thread, since both sides shake hands. */
struct pair_accept {
	struct mig_listener *l;
	struct mig_channel *ch;
	int err;
};

static void *pair_accept_thread(void *arg)
{
	struct pair_accept *a = arg;

	a->err = mig_channel_accept(a->l, 10000, -1, &a->ch);
	return NULL;
}

/* Read what the receiver can decrypt now, then until ms pass without more; appends at *got. */
static void drain_for(struct mig_channel *ch, uint8_t *buf, size_t cap, size_t *got, int ms)
{
	for (int idle = 0; idle <= ms / 10 && *got < cap;) {
		ssize_t n = mig_channel_read(ch, buf + *got, cap - *got);
		if (n > 0) {
			*got += (size_t)n;
			idle = 0;
			continue;
		}
		assert_int_equal(n, -EAGAIN);
		struct pollfd p = { .fd = ch->fd, .events = POLLIN };
		if (!ms || poll(&p, 1, 10) == 0)
			idle++;
	}
}

struct pair_reader {
	struct mig_channel *ch;
	uint8_t *buf;
	size_t cap, got;
};

/* Read until all came or 5 s passed without a byte. */
static void *pair_reader_thread(void *arg)
{
	struct pair_reader *r = arg;

	drain_for(r->ch, r->buf, r->cap, &r->got, 5000);
	return NULL;
}

/*
 * Records leave in batches, and a write counts only records whose every
 * byte reached the kernel: with the receiver not reading, what the source
 * was told is written is exactly what the receiver can then decrypt, no
 * more (a record cut short is useless to it); the source offers the rest
 * again and it all arrives, in order.  What "GO not written" rests on.
 */
static void test_written_is_decryptable(void **state)
{
	const size_t total = 32u << 20, cap = total;	/* more than the buffers hold */
	struct mig_listener l;
	struct mig_tls st, ct;
	struct mig_channel *src;
	struct pair_accept a = { .l = &l };
	pthread_t th;
	char uri[64], why[512];
	uint8_t *data = malloc(total), *got = malloc(cap);
	size_t written = 0, recvd = 0;
	int err = -EADDRINUSE;

	for (size_t i = 0; i < total; i++)
		data[i] = pattern(i);
	tls_dir(&st, "server");
	tls_dir(&ct, "client");
	for (int i = 0; i < 8 && err == -EADDRINUSE; i++) {
		snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%d", port_base++);
		err = mig_channel_listen(uri, &st, &l, why, sizeof(why));
	}
	assert_int_equal(err, 0);
	assert_int_equal(pthread_create(&th, NULL, pair_accept_thread, &a), 0);
	if (mig_channel_open(uri, &ct, 5000, &src, why, sizeof(why)))
		fail_msg("open: %s", why);
	pthread_join(th, NULL);
	assert_int_equal(a.err, 0);
	/* Batches of several records, stopped part-way when the buffers fill. */
	mig_channel_set_buffers(src, 256 << 10, 0);

	/* Fill everything between the two until the source must wait. */
	for (int i = 0; i < 10000; i++) {
		struct iovec v = { data + written, total - written };
		ssize_t n = mig_channel_writev(src, &v, 1);
		if (n == -EAGAIN)
			break;
		assert_true(n > 0);
		written += (size_t)n;
	}
	assert_true(written > 0 && written < total);
	drain_for(a.ch, got, cap, &recvd, 300);
	if (recvd != written)
		fail_msg("told %zu bytes were written, the receiver decrypted %zu", written, recvd);

	/* The rest, offered again from where the count stopped, read as it comes. */
	struct pair_reader r = { .ch = a.ch, .buf = got, .cap = cap, .got = recvd };
	assert_int_equal(pthread_create(&th, NULL, pair_reader_thread, &r), 0);
	for (int i = 0; i < 100000 && written < total; i++) {
		struct iovec v = { data + written, total - written };
		ssize_t n = mig_channel_writev(src, &v, 1);
		if (n > 0) {
			written += (size_t)n;
			continue;
		}
		assert_int_equal(n, -EAGAIN);
		struct pollfd p = { .fd = src->fd, .events = POLLOUT };
		assert_int_equal(poll(&p, 1, 5000), 1);
	}
	pthread_join(th, NULL);
	assert_int_equal(written, total);
	assert_int_equal(r.got, total);
	assert_memory_equal(got, data, total);
	mig_channel_close(src);
	mig_channel_close(a.ch);
	mig_listener_close(&l);
	free(data);
	free(got);
}

static void test_psk_ok(void **state)
{
	char why[512];
	struct dest d;

	dest_start(&d, "tcp", "psk", MIG_TLS_VERIFY_AUTO);
	if (source(&d, "psk", NULL, why, sizeof(why)))
		fail_msg("%s", why);
	assert_int_equal(dest_end(&d), 0);
	assert_true(d.data_ok);
}

/*
 * The source refuses the destination's certificate: why says so, and the
 * destination, refused in turn, still waits; then a good source gets in
 * (when the destination's certificate is good for one).
 */
static void refused_by_source(const char *server_dir, const char *client_dir,
			      const char *hostname, const char *want, bool then_good)
{
	char why[512];
	struct dest d;

	dest_start(&d, "tcp", server_dir, MIG_TLS_VERIFY_AUTO);
	assert_int_not_equal(source(&d, client_dir, hostname, why, sizeof(why)), 0);
	expect_why(why, want);
	if (then_good) {
		if (source(&d, "client", NULL, why, sizeof(why)))
			fail_msg("the good source after a bad one: %s", why);
		assert_int_equal(dest_end(&d), 0);
		assert_true(d.data_ok);
	} else {
		assert_int_equal(dest_end(&d), -EINTR);	/* it was still waiting */
	}
}

static void test_wrong_ca(void **state)
{
	refused_by_source("server", "client-otherca", NULL, "issuer is unknown", true);
}

static void test_wrong_name(void **state)
{
	refused_by_source("server-wrongname", "client", NULL, "does not match", false);
	/* The name given with --tls-hostname is the one checked. */
	refused_by_source("server", "client", "other.example", "does not match", true);
}

static void test_expired(void **state)
{
	refused_by_source("server-expired", "client", NULL, "expired", false);
}

static void test_not_yet_valid(void **state)
{
	refused_by_source("server-notyet", "client", NULL, "not yet", false);
}

/* A source without a certificate: refused where one is required, taken where not. */
static void test_client_without_cert(void **state)
{
	char why[512];
	struct dest d;

	dest_start(&d, "tcp", "server", MIG_TLS_VERIFY_AUTO);
	assert_int_not_equal(source(&d, "client-nocert", NULL, why, sizeof(why)), 0);
	expect_why(why, "ertificate");
	if (source(&d, "client", NULL, why, sizeof(why)))
		fail_msg("%s", why);
	assert_int_equal(dest_end(&d), 0);

	dest_start(&d, "tcp", "server", MIG_TLS_VERIFY_OFF);
	if (source(&d, "client-nocert", NULL, why, sizeof(why)))
		fail_msg("verify-peer off: %s", why);
	assert_int_equal(dest_end(&d), 0);
	assert_true(d.data_ok);
}

/* A client certificate from another CA: the destination refuses it. */
static void test_client_other_ca(void **state)
{
	char why[512];
	struct dest d;

	/* Trusts the right CA for the server, presents a certificate of another. */
	dest_start(&d, "tcp", "server", MIG_TLS_VERIFY_ON);
	assert_int_not_equal(source(&d, "client-mixed", NULL, why, sizeof(why)), 0);
	expect_why(why, "alert");
	assert_int_equal(dest_end(&d), -EINTR);
}

/* A plain source at a TLS destination: it hears a TLS alert, the destination waits on. */
static void test_plain_to_tls(void **state)
{
	struct mig_channel *ch;
	uint8_t b[16] = { 0 };
	char why[512];
	struct dest d;

	dest_start(&d, "tcp", "server", MIG_TLS_VERIFY_AUTO);
	assert_int_equal(mig_channel_open(d.uri, NULL, 5000, &ch, why, sizeof(why)), 0);
	assert_int_equal(mig_channel_write(ch, HELLO, 12), 12);
	struct mig_stream s;
	assert_int_equal(mig_stream_init(&s, ch, 4096), 0);
	s.timeout_ms = 5000;
	mig_stream_get(&s, b, 2);
	assert_int_equal(b[0], 21);	/* an alert record */
	assert_int_equal(b[1], 3);
	assert_true(mig_stream_heard_tls_alert(&s));
	mig_stream_destroy(&s);
	if (source(&d, "client", NULL, why, sizeof(why)))
		fail_msg("the good source after a plain one: %s", why);
	assert_int_equal(dest_end(&d), 0);
}

/* A TLS source at a plain destination: refused, saying the other side speaks no TLS. */
static void test_tls_to_plain(void **state)
{
	char why[512];
	struct dest d;

	dest_start(&d, "tcp", NULL, MIG_TLS_VERIFY_AUTO);
	d.plain_reply = true;
	assert_int_equal(source(&d, "client", NULL, why, sizeof(why)), -ECONNREFUSED);
	expect_why(why, "does not speak TLS");
	assert_int_equal(dest_end(&d), 0);
}

static void test_psk_mismatch(void **state)
{
	char why[512];
	struct dest d;

	dest_start(&d, "tcp", "psk", MIG_TLS_VERIFY_AUTO);
	assert_int_not_equal(source(&d, "psk-other", NULL, why, sizeof(why)), 0);
	expect_why(why, "PSK");
	/* x509 credentials against a PSK destination: no common ground either. */
	assert_int_not_equal(source(&d, "client", NULL, why, sizeof(why)), 0);
	if (source(&d, "psk", NULL, why, sizeof(why)))
		fail_msg("the right key after wrong ones: %s", why);
	assert_int_equal(dest_end(&d), 0);
	assert_true(d.data_ok);
}

static void write_file(const char *name, const char *text)
{
	char path[200];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", certs, name);
	assert_non_null(f = fopen(path, "w"));
	fputs(text, f);
	fclose(f);
}

/* --tls-authz: only the sources named get in (a certificate's DN, a PSK identity). */
static void test_authz(void **state)
{
	char why[512];
	struct dest d;

	write_file("authz-other", "CN=someone-else\nferry\n");
	write_file("authz-ok", "CN=someone-else\nCN=ferry-source\n");
	write_file("authz-psk", "CN=ferry-source\nferry\n");
	next_authz = "authz-other";
	dest_start(&d, "tcp", "server", MIG_TLS_VERIFY_AUTO);
	assert_int_not_equal(source(&d, "client", NULL, why, sizeof(why)), 0);
	expect_why(why, "Access was denied");
	assert_int_equal(dest_end(&d), -EINTR);

	next_authz = "authz-ok";
	dest_start(&d, "tcp", "server", MIG_TLS_VERIFY_AUTO);
	if (source(&d, "client", NULL, why, sizeof(why)))
		fail_msg("an authorised source: %s", why);
	assert_int_equal(dest_end(&d), 0);
	assert_true(d.data_ok);

	next_authz = "authz-psk";
	dest_start(&d, "tcp", "psk", MIG_TLS_VERIFY_AUTO);
	if (source(&d, "psk", NULL, why, sizeof(why)))
		fail_msg("an authorised PSK identity: %s", why);
	assert_int_equal(dest_end(&d), 0);

	/* Without a checked certificate there is nobody to look up. */
	struct mig_tls t;
	tls_dir(&t, "server");
	t.verify_peer = MIG_TLS_VERIFY_OFF;
	snprintf(t.authz, sizeof(t.authz), "%s/authz-ok", certs);
	assert_int_equal(mig_tls_check(&t, true, why, sizeof(why)), -EINVAL);
	expect_why(why, "--tls-verify-peer on");
}

/* Credentials that cannot work are refused before any connection. */
static void test_bad_creds(void **state)
{
	struct mig_tls t;
	char why[512], path[200];
	FILE *f;

	tls_dir(&t, "nonexistent");
	assert_int_equal(mig_tls_check(&t, false, why, sizeof(why)), -EINVAL);
	expect_why(why, "not a directory");
	tls_dir(&t, "client");
	assert_int_equal(mig_tls_check(&t, false, why, sizeof(why)), 0);
	assert_int_equal(mig_tls_check(&t, true, why, sizeof(why)), -EINVAL);	/* no server cert */
	expect_why(why, "server-cert.pem");
	tls_dir(&t, "server");
	assert_int_equal(mig_tls_check(&t, true, why, sizeof(why)), 0);
	tls_dir(&t, "psk-bad");
	snprintf(path, sizeof(path), "%s/psk-bad", certs);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/psk-bad/keys.psk", certs);
	assert_non_null(f = fopen(path, "w"));
	fputs("ferry:abc\n", f);	/* an odd number of hex digits */
	fclose(f);
	assert_int_equal(mig_tls_check(&t, false, why, sizeof(why)), -EINVAL);
	expect_why(why, "line 1");
	/* TLS needs a connection. */
	struct mig_channel *ch;
	tls_dir(&t, "client");
	snprintf(path, sizeof(path), "file:%s/x", certs);
	assert_int_equal(mig_channel_open(path, &t, 1000, &ch, why, sizeof(why)), -EINVAL);
	expect_why(why, "needs a connection");
}

static int make_certs(void **state)
{
	char cmd[512];

	snprintf(certs, sizeof(certs), "/tmp/ferry-tls.XXXXXX");
	if (!mkdtemp(certs))
		return -1;
	snprintf(cmd, sizeof(cmd), "scripts/tls-certs.sh %s >/dev/null && mkdir %s/client-mixed && "
		 "cp %s/client/ca-cert.pem %s/client-otherca/client-*.pem %s/client-mixed/",
		 certs, certs, certs, certs, certs);
	srand((unsigned)time(NULL) ^ (unsigned)getpid());
	port_base = 10000 + rand() % 20000;
	return system(cmd) ? -1 : 0;
}

static int drop_certs(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", certs);
	return system(cmd) ? -1 : 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_x509_ok),
		cmocka_unit_test(test_psk_ok),
		cmocka_unit_test(test_written_is_decryptable),
		cmocka_unit_test(test_wrong_ca),
		cmocka_unit_test(test_wrong_name),
		cmocka_unit_test(test_expired),
		cmocka_unit_test(test_not_yet_valid),
		cmocka_unit_test(test_client_without_cert),
		cmocka_unit_test(test_client_other_ca),
		cmocka_unit_test(test_plain_to_tls),
		cmocka_unit_test(test_tls_to_plain),
		cmocka_unit_test(test_psk_mismatch),
		cmocka_unit_test(test_authz),
		cmocka_unit_test(test_bad_creds),
	};

	if (access("scripts/tls-certs.sh", X_OK) || system("command -v certtool >/dev/null")) {
		puts("skipped: needs certtool (gnutls-bin) and to run from the source tree");
		return 77;
	}
	return cmocka_run_group_tests(tests, make_certs, drop_certs);
}
