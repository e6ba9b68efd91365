/*
 * The TLS layer of a migration channel (tls.h), with GnuTLS as QEMU's
 * crypto/tlssession.c: a session object over a connected tcp: or unix:
 * socket, credentials from a directory under QEMU's file names, TLS 1.3
 * only (no renegotiation: one reading and one writing thread may share a
 * session) with AES-GCM first (AES-NI makes it the cheapest AEAD here).
 *
 * The socket stays non-blocking as below plain channels: a read or write
 * that would block returns -EAGAIN, the stream polls ch->fd, and a record
 * GnuTLS decrypted but we did not read yet is reported by ->pending so
 * that poll() is not asked about bytes the kernel no longer holds.
 */
#include "migration/channel/tls.h"

#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"

/* TLS 1.3 only; AES-128-GCM first: the fastest AEAD with AES-NI, and as strong as needed. */
#define TLS_PRIORITY "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:" \
		     "+CHACHA20-POLY1305"
#define TLS_PRIORITY_PSK TLS_PRIORITY ":+ECDHE-PSK:+DHE-PSK:+PSK"
/* A peer that connects and says nothing holds a destination no longer. */
#define TLS_HANDSHAKE_MS 10000
#define TLS_PATH_MAX (MIG_TLS_DIR_MAX + 32)
/*
 * GnuTLS pulls a record's 5-byte header, then its body: two recv() per
 * 16 KiB.  Reading ahead this much at a time makes it about one per
 * sixteen records, for the price of copying ciphertext once.
 */
#define TLS_READ_AHEAD (256u << 10)
/*
 * Records are encrypted into a batch and leave in one sendmsg(): one
 * system call per sixteen records instead of one each (tls_writev).  One
 * write call encrypts one batch at most, so the stream still looks at
 * intr_fd between them.  A batch is at most a quarter of the socket's
 * send buffer: a batch the buffer cannot take leaves one segment in
 * flight, which a receiver acks only after its delayed-ack timer (40 ms
 * per buffer's worth).
 * TLS_BATCH_ROOM is what a record may add beyond its plaintext (header,
 * content type, tag, and slack for a KeyUpdate GnuTLS may slip in).
 */
#define TLS_BATCH (256u << 10)
#define TLS_BATCH_RECORDS 64
#define TLS_RECORD_MAX (16u << 10)
#define TLS_BATCH_ROOM 512u
#define TLS_WB_SIZE (TLS_BATCH + TLS_BATCH_RECORDS * TLS_BATCH_ROOM)

/*
 * One TLS connection.  The credentials live as long as the session.
 * Threads: the channel's owner does everything; in post-copy a second
 * thread writes while the owner reads (channel.h).  So rd_* belong to
 * the reading thread and wr_* to the writing one; `last` says which of
 * the two reasons is the latest (atomic).
 */
struct mig_tls_session {
	gnutls_session_t s;
	gnutls_certificate_credentials_t x509;
	gnutls_psk_client_credentials_t pskc;
	gnutls_psk_server_credentials_t psks;
	int fd;
	bool server, psk, verify;
	int rd_errno, wr_errno;		/* the socket's errno behind PULL/PUSH errors */
	char rd_why[200], wr_why[200];
	int last;			/* 0: no failure, 1: rd_why, 2: wr_why */
	uint8_t first[8];		/* the peer's first bytes: does it speak TLS at all? */
	size_t first_len;
	/*
	 * Ciphertext read ahead, not yet pulled by GnuTLS (reading thread).
	 * GnuTLS reports E_AGAIN only once it drained this, so a wait on the
	 * socket after E_AGAIN misses nothing; ->pending reports it otherwise.
	 */
	uint8_t *ra;
	size_t ra_pos, ra_len;
	/*
	 * The writing thread's batch: ciphertext of whole records in wb,
	 * wb_sent of it with the kernel; rec[] gives where each record's
	 * ciphertext ends and how much plaintext it carries, rec_done of
	 * them reported written.  batching (atomic: the reading thread's
	 * tls_push looks at it): tls_push appends to wb (only for
	 * wr_thread, inside tls_writev) instead of sending.
	 */
	uint8_t *wb;
	size_t wb_len, wb_sent;
	struct { size_t end, plain; } rec[TLS_BATCH_RECORDS];
	unsigned rec_n, rec_done;
	size_t batch_max;		/* TLS_BATCH, less for a small socket buffer */
	bool batching;
	pthread_t wr_thread;
};

static uint64_t tls_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Milliseconds left until end (0: no deadline, -1 returned). */
static int tls_left_ms(uint64_t end)
{
	uint64_t now = tls_now_ms();

	if (!end)
		return -1;
	return now >= end ? 0 : (int)(end - now);
}

static bool tls_file(const char *dir, const char *name, char *path, size_t len)
{
	struct stat st;

	snprintf(path, len, "%s/%s", dir, name);
	return !stat(path, &st) && S_ISREG(st.st_mode);
}

static bool tls_is_psk(const struct mig_tls *t)
{
	char p[TLS_PATH_MAX];

	return tls_file(t->dir, "keys.psk", p, sizeof(p)) &&
	       !tls_file(t->dir, "ca-cert.pem", p, sizeof(p));
}

/*
 * Check every line of keys.psk (IDENTITY:HEXKEY, as QEMU and GnuTLS's
 * psktool write it) and return the first.  0 or -EINVAL with why.
 */
static int tls_psk_first(const char *path, char *id, size_t idlen, char *key, size_t keylen,
			 char *why, size_t len)
{
	FILE *f = fopen(path, "re");
	char line[1024];
	unsigned n = 0;
	int err = 0;

	if (!f) {
		snprintf(why, len, "cannot read %.200s: %s", path, strerror(errno));
		return -errno;
	}
	while (!err && n < 100000 && fgets(line, sizeof(line), f)) {
		char *colon = strchr(line, ':'), *hex;
		size_t hl;

		n++;
		line[strcspn(line, "\r\n")] = '\0';
		hex = colon ? colon + 1 : NULL;
		hl = hex ? strlen(hex) : 0;
		if (!colon || colon == line || (size_t)(colon - line) >= idlen || !hl || hl % 2 ||
		    hl >= keylen || strspn(hex, "0123456789abcdefABCDEF") != hl) {
			snprintf(why, len, "%.200s line %u: use IDENTITY:HEXKEY (an even number of hex "
				 "digits, at most %zu)", path, n, keylen - 2);
			err = -EINVAL;
		} else if (n == 1) {
			memcpy(id, line, (size_t)(colon - line));
			id[colon - line] = '\0';
			strcpy(key, hex);
		}
	}
	fclose(f);
	if (!err && !n) {
		snprintf(why, len, "%.200s holds no key", path);
		err = -EINVAL;
	}
	return err;
}

static int tls_load_psk(struct mig_tls_session *ts, const struct mig_tls *t, char *why,
			size_t len)
{
	char path[TLS_PATH_MAX], id[256], key[1026];
	int r, err;

	tls_file(t->dir, "keys.psk", path, sizeof(path));
	err = tls_psk_first(path, id, sizeof(id), key, sizeof(key), why, len);
	if (err)
		return err;
	ts->psk = true;
	if (ts->server) {
		r = gnutls_psk_allocate_server_credentials(&ts->psks);
		if (!r)
			r = gnutls_psk_set_server_credentials_file(ts->psks, path);
		if (!r)
			r = gnutls_psk_set_server_known_dh_params(ts->psks, GNUTLS_SEC_PARAM_HIGH);
	} else {
		gnutls_datum_t k = { .data = (unsigned char *)key, .size = (unsigned)strlen(key) };
		r = gnutls_psk_allocate_client_credentials(&ts->pskc);
		if (!r)
			r = gnutls_psk_set_client_credentials(ts->pskc, id, &k, GNUTLS_PSK_KEY_HEX);
	}
	if (r) {
		snprintf(why, len, "cannot use %.200s: %s", path, gnutls_strerror(r));
		return -EINVAL;
	}
	return 0;
}

static int tls_load_x509(struct mig_tls_session *ts, const struct mig_tls *t, char *why,
			 size_t len)
{
	char ca[TLS_PATH_MAX], cert[TLS_PATH_MAX], key[TLS_PATH_MAX];
	const char *side = ts->server ? "server" : "client";
	bool has_ca = tls_file(t->dir, "ca-cert.pem", ca, sizeof(ca));
	bool has_cert, has_key;
	char n1[32], n2[32];
	int r;

	snprintf(n1, sizeof(n1), "%s-cert.pem", side);
	snprintf(n2, sizeof(n2), "%s-key.pem", side);
	has_cert = tls_file(t->dir, n1, cert, sizeof(cert));
	has_key = tls_file(t->dir, n2, key, sizeof(key));
	if (!ts->server && !has_ca) {
		snprintf(why, len, "%.200s has neither ca-cert.pem (the CA that signed the "
			 "destination's certificate) nor keys.psk", t->dir);
		return -EINVAL;
	}
	if ((ts->server && (!has_cert || !has_key)) || has_cert != has_key) {
		snprintf(why, len, "%.200s needs %s and %s%s", t->dir, n1, n2,
			 ts->server ? " (or keys.psk)" : " together");
		return -EINVAL;
	}
	ts->verify = ts->server && (t->verify_peer == MIG_TLS_VERIFY_ON ||
				    (t->verify_peer == MIG_TLS_VERIFY_AUTO && has_ca));
	if (ts->verify && !has_ca) {
		snprintf(why, len, "--tls-verify-peer on needs %.200s/ca-cert.pem", t->dir);
		return -EINVAL;
	}
	r = gnutls_certificate_allocate_credentials(&ts->x509);
	if (r)
		goto fail;
	if (has_ca) {
		r = gnutls_certificate_set_x509_trust_file(ts->x509, ca, GNUTLS_X509_FMT_PEM);
		if (r <= 0) {
			snprintf(why, len, "cannot load %.200s: %s", ca,
				 r ? gnutls_strerror(r) : "no certificate in it");
			return -EINVAL;
		}
	}
	if (has_cert) {
		r = gnutls_certificate_set_x509_key_file(ts->x509, cert, key, GNUTLS_X509_FMT_PEM);
		if (r < 0) {
			snprintf(why, len, "cannot load %.200s with %s: %s", cert, n2, gnutls_strerror(r));
			return -EINVAL;
		}
	}
	return 0;
fail:
	snprintf(why, len, "TLS: %s", gnutls_strerror(r));
	return -ENOMEM;
}

static void tls_free(struct mig_tls_session *ts)
{
	if (!ts)
		return;
	if (ts->s)
		gnutls_deinit(ts->s);
	if (ts->x509)
		gnutls_certificate_free_credentials(ts->x509);
	if (ts->pskc)
		gnutls_psk_free_client_credentials(ts->pskc);
	if (ts->psks)
		gnutls_psk_free_server_credentials(ts->psks);
	free(ts->ra);
	free(ts->wb);
	free(ts);
}

/* Credentials for one side, from t->dir.  0 or -errno with why. */
static int tls_load(struct mig_tls_session *ts, const struct mig_tls *t, char *why, size_t len)
{
	struct stat st;

	if (stat(t->dir, &st) || !S_ISDIR(st.st_mode)) {
		snprintf(why, len, "--tls-creds %.200s: not a directory", t->dir);
		return -EINVAL;
	}
	return tls_is_psk(t) ? tls_load_psk(ts, t, why, len) : tls_load_x509(ts, t, why, len);
}

int mig_tls_check(const struct mig_tls *t, bool server, char *why, size_t len)
{
	struct mig_tls_session *ts;
	int err;

	if (server && t->authz[0] && access(t->authz, R_OK)) {
		snprintf(why, len, "cannot read --tls-authz %.200s: %s", t->authz, strerror(errno));
		return -EINVAL;
	}
	ts = calloc(1, sizeof(*ts));
	if (!ts) {
		snprintf(why, len, "out of memory");
		return -ENOMEM;
	}
	ts->server = server;
	err = tls_load(ts, t, why, len);
	if (!err && server && t->authz[0] && !ts->psk && !ts->verify) {
		snprintf(why, len, "--tls-authz needs the source's certificate checked: "
			 "ca-cert.pem and --tls-verify-peer on");
		err = -EINVAL;
	}
	tls_free(ts);
	return err;
}

/*
 * GnuTLS's transport: the socket, never blocking; errno tells GnuTLS why.
 * Inside tls_writev the writing thread's records go to its batch instead
 * (anything else, the handshake or an alert from the reading thread, is
 * sent at once, as before batching).
 */
static ssize_t tls_push(gnutls_transport_ptr_t p, const giovec_t *iov, int iovcnt)
{
	struct mig_tls_session *ts = p;
	struct msghdr msg = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt };
	ssize_t n;

	if (__atomic_load_n(&ts->batching, __ATOMIC_ACQUIRE) &&
	    pthread_equal(ts->wr_thread, pthread_self())) {
		size_t total = 0;
		for (int i = 0; i < iovcnt; i++)
			total += iov[i].iov_len;
		if (total > TLS_WB_SIZE - ts->wb_len) {
			/* tls_writev leaves room for a record: this cannot happen. */
			ts->wr_errno = ENOBUFS;
			return -1;
		}
		for (int i = 0; i < iovcnt; i++) {
			memcpy(ts->wb + ts->wb_len, iov[i].iov_base, iov[i].iov_len);
			ts->wb_len += iov[i].iov_len;
		}
		return (ssize_t)total;
	}
	n = sendmsg(ts->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);

	if (n < 0)
		ts->wr_errno = errno;
	return n;
}

/* A batch for this socket's send buffer: a quarter of it, at least a record. */
static void tls_size_batch(struct mig_tls_session *ts)
{
	int sndbuf = 0;
	socklen_t len = sizeof(sndbuf);

	ts->batch_max = TLS_BATCH;
	if (!getsockopt(ts->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &len) && sndbuf > 0 &&
	    (size_t)sndbuf / 4 < TLS_BATCH)
		ts->batch_max = (size_t)sndbuf / 4;
}

static ssize_t tls_pull(gnutls_transport_ptr_t p, void *buf, size_t len)
{
	struct mig_tls_session *ts = p;
	ssize_t n;

	if (ts->ra_pos < ts->ra_len) {
		n = (ssize_t)(len < ts->ra_len - ts->ra_pos ? len : ts->ra_len - ts->ra_pos);
		memcpy(buf, ts->ra + ts->ra_pos, (size_t)n);
		ts->ra_pos += (size_t)n;
		return n;
	}
	if (len >= TLS_READ_AHEAD) {
		n = recv(ts->fd, buf, len, MSG_DONTWAIT);
	} else {
		n = recv(ts->fd, ts->ra, TLS_READ_AHEAD, MSG_DONTWAIT);
		if (n > 0) {
			ts->ra_pos = (size_t)n < len ? (size_t)n : len;
			ts->ra_len = (size_t)n;
			memcpy(buf, ts->ra, ts->ra_pos);
			buf = ts->ra;	/* for the first bytes, below */
			n = (ssize_t)ts->ra_pos;
		}
	}
	if (n < 0) {
		ts->rd_errno = errno;
		return n;
	}
	if (ts->first_len < sizeof(ts->first)) {
		size_t k = sizeof(ts->first) - ts->first_len;
		k = k < (size_t)n ? k : (size_t)n;
		memcpy(ts->first + ts->first_len, buf, k);
		ts->first_len += k;
	}
	return n;
}

static int tls_pull_timeout(gnutls_transport_ptr_t p, unsigned int ms)
{
	struct mig_tls_session *ts = p;
	struct pollfd pf = { .fd = ts->fd, .events = POLLIN };

	return poll(&pf, 1, ms == GNUTLS_INDEFINITE_TIMEOUT ? -1 : (int)ms);
}

static int tls_session_new(struct mig_channel *ch, const struct mig_tls *t, bool server,
			   const char *host, struct mig_tls_session **out, char *why, size_t len)
{
	struct mig_tls_session *ts = calloc(1, sizeof(*ts));
	const char *name = t->hostname[0] ? t->hostname : host;
	int err, r;

	if (!ts) {
		snprintf(why, len, "out of memory");
		return -ENOMEM;
	}
	ts->server = server;
	ts->fd = ch->fd;
	ts->ra = malloc(TLS_READ_AHEAD);
	ts->wb = malloc(TLS_WB_SIZE);
	if (!ts->ra || !ts->wb) {
		snprintf(why, len, "out of memory");
		err = -ENOMEM;
		goto fail;
	}
	err = tls_load(ts, t, why, len);
	if (err)
		goto fail;
	/* No tickets: nothing resumes a session, and a ticket is one more message to race. */
	r = gnutls_init(&ts->s, (server ? GNUTLS_SERVER : GNUTLS_CLIENT) | GNUTLS_NONBLOCK |
			GNUTLS_NO_TICKETS);
	if (!r)
		r = gnutls_priority_set_direct(ts->s, ts->psk ? TLS_PRIORITY_PSK : TLS_PRIORITY, NULL);
	if (!r && ts->psk)
		r = gnutls_credentials_set(ts->s, GNUTLS_CRD_PSK,
					   server ? (void *)ts->psks : (void *)ts->pskc);
	else if (!r)
		r = gnutls_credentials_set(ts->s, GNUTLS_CRD_CERTIFICATE, ts->x509);
	if (r) {
		snprintf(why, len, "cannot set up TLS: %s", gnutls_strerror(r));
		err = -EINVAL;
		goto fail;
	}
	if (!ts->psk && server && ts->verify) {
		gnutls_certificate_server_set_request(ts->s, GNUTLS_CERT_REQUIRE);
		gnutls_session_set_verify_cert(ts->s, NULL, 0);
	} else if (!ts->psk && !server) {
		/* The CA, the dates and, unless none is known (unix:), the name. */
		gnutls_session_set_verify_cert(ts->s, name && *name ? name : NULL, 0);
	}
	gnutls_transport_set_ptr(ts->s, ts);
	gnutls_transport_set_vec_push_function(ts->s, tls_push);
	gnutls_transport_set_pull_function(ts->s, tls_pull);
	gnutls_transport_set_pull_timeout_function(ts->s, tls_pull_timeout);
	*out = ts;
	return 0;
fail:
	tls_free(ts);
	return err;
}

/* Did the peer's first bytes look like a TLS record (or were there none)? */
static bool tls_peer_spoke_tls(const struct mig_tls_session *ts)
{
	return ts->first_len < 2 || (ts->first[0] >= 20 && ts->first[0] <= 24 && ts->first[1] == 3);
}

/* Why the handshake failed with GnuTLS error r, in words a user can act on. */
static void tls_describe(struct mig_tls_session *ts, int r, char *why, size_t len)
{
	const char *peer = ts->server ? "the source" : "the destination";
	const char *hint = ts->psk ? " (PSK: both sides need the same key under the same identity "
			   "in keys.psk)" : "";
	gnutls_datum_t out = { 0 };

	if (!tls_peer_spoke_tls(ts)) {
		if (ts->first_len >= 5 && !memcmp(ts->first, "FERRYMIG", ts->first_len))
			snprintf(why, len, "the source connected without TLS (it sent a plain ferry "
				 "stream) and this destination requires TLS: give 'ferry migrate' "
				 "--tls-creds DIR");
		else
			snprintf(why, len, "%s does not speak TLS (it answered with bytes that are no "
				 "TLS record)%s", peer, ts->server ? "" : ": start it with --tls-creds "
				 "DIR too, or migrate without TLS");
		return;
	}
	switch (r) {
	case GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR:
		if (!gnutls_certificate_verification_status_print(
			    gnutls_session_get_verify_cert_status(ts->s), GNUTLS_CRT_X509, &out, 0)) {
			snprintf(why, len, "%s's certificate is refused: %s", peer, out.data);
			gnutls_free(out.data);
			return;
		}
		break;
	case GNUTLS_E_FATAL_ALERT_RECEIVED:
		snprintf(why, len, "%s refused the TLS handshake (alert: %s)%s", peer,
			 gnutls_alert_get_name(gnutls_alert_get(ts->s)), hint);
		return;
	case GNUTLS_E_NO_CERTIFICATE_FOUND:
	case GNUTLS_E_CERTIFICATE_REQUIRED:
		if (ts->server) {
			snprintf(why, len, "the source sent no certificate and this destination "
				 "requires one (--tls-verify-peer): give the source client-cert.pem "
				 "and client-key.pem");
			return;
		}
		break;
	case GNUTLS_E_PREMATURE_TERMINATION:
	case GNUTLS_E_PULL_ERROR:
	case GNUTLS_E_PUSH_ERROR:
		snprintf(why, len, "%s closed the connection during the TLS handshake%s%s", peer,
			 ts->server ? "" : " (does it use TLS too? its log says why)", hint);
		return;
	}
	snprintf(why, len, "TLS handshake with %s failed: %s%s", peer, gnutls_strerror(r), hint);
}

/*
 * Run the handshake within timeout_ms (-1: none), or until intr_fd is
 * readable.  0, -ETIMEDOUT, -EINTR, or -ECONNREFUSED with why.
 */
static int tls_handshake(struct mig_tls_session *ts, int timeout_ms, int intr_fd, char *why,
			 size_t len)
{
	uint64_t end = timeout_ms < 0 ? 0 : tls_now_ms() + (uint64_t)timeout_ms + !timeout_ms;

	for (unsigned i = 0; i < 1000000; i++) {
		int r = gnutls_handshake(ts->s);
		if (!r)
			return 0;
		if (r != GNUTLS_E_AGAIN && r != GNUTLS_E_INTERRUPTED) {
			if (!gnutls_error_is_fatal(r))
				continue;	/* a warning alert: go on */
			tls_describe(ts, r, why, len);
			/* Tell the peer why too (best effort: it may be gone). */
			if (r != GNUTLS_E_FATAL_ALERT_RECEIVED)
				gnutls_alert_send_appropriate(ts->s, r);
			return -ECONNREFUSED;
		}
		struct pollfd p[2] = {
			{ .fd = ts->fd, .events = gnutls_record_get_direction(ts->s) ? POLLOUT : POLLIN },
			{ .fd = intr_fd, .events = POLLIN },
		};
		int left = tls_left_ms(end);
		if (!left)
			break;
		int n = poll(p, 2, left);
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n > 0 && p[1].revents)
			return -EINTR;
	}
	snprintf(why, len, "the TLS handshake with the %s did not finish within %d ms",
		 ts->server ? "source" : "destination", timeout_ms);
	return -ETIMEDOUT;
}

/* The source's identity: its certificate's subject DN, or its PSK identity. */
static int tls_peer_name(struct mig_tls_session *ts, char *name, size_t len)
{
	const gnutls_datum_t *certs;
	gnutls_x509_crt_t crt;
	gnutls_datum_t dn = { 0 };
	unsigned n = 0;
	int r;

	if (ts->psk) {
		const char *id = gnutls_psk_server_get_username(ts->s);
		snprintf(name, len, "%s", id ? id : "");
		return 0;
	}
	certs = gnutls_certificate_get_peers(ts->s, &n);
	if (!certs || !n || gnutls_x509_crt_init(&crt))
		return -EACCES;
	r = gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER);
	if (!r)
		r = gnutls_x509_crt_get_dn3(crt, &dn, 0);
	if (!r)
		snprintf(name, len, "%.*s", (int)dn.size, dn.data);
	gnutls_free(dn.data);
	gnutls_x509_crt_deinit(crt);
	return r ? -EACCES : 0;
}

/* Is the source named in the authz file?  0, or -ECONNREFUSED with why. */
static int tls_authorise(struct mig_tls_session *ts, const char *path, char *why, size_t len)
{
	char name[512], line[600];
	unsigned n = 0;
	bool ok = false;
	FILE *f;

	if (tls_peer_name(ts, name, sizeof(name))) {
		snprintf(why, len, "the source's identity cannot be read");
		return -ECONNREFUSED;
	}
	f = fopen(path, "re");
	if (!f) {
		snprintf(why, len, "cannot read --tls-authz %.200s: %s", path, strerror(errno));
		return -ECONNREFUSED;
	}
	while (!ok && n++ < 100000 && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\r\n")] = '\0';
		ok = line[0] && !strcmp(line, name);
	}
	fclose(f);
	if (ok)
		return 0;
	gnutls_alert_send(ts->s, GNUTLS_AL_FATAL, GNUTLS_A_ACCESS_DENIED);
	snprintf(why, len, "the source '%.200s' is not in --tls-authz %.200s", name, path);
	return -ECONNREFUSED;
}

/* Make ch a TLS channel: session set up, handshake done.  0 or -errno with why. */
static int tls_start(struct mig_channel *ch, const struct mig_tls *t, bool server,
		     const char *host, int timeout_ms, int intr_fd, char *why, size_t len)
{
	struct mig_tls_session *ts;
	int err = tls_session_new(ch, t, server, host, &ts, why, len);

	if (err)
		return err;
	err = tls_handshake(ts, timeout_ms, intr_fd, why, len);
	if (!err && server && t->authz[0])
		err = tls_authorise(ts, t->authz, why, len);
	if (err) {
		tls_free(ts);
		return err;
	}
	char *desc = gnutls_session_get_desc(ts->s);
	pr_info("TLS session with the %s: %s", server ? "source" : "destination",
		desc ? desc : "?");
	gnutls_free(desc);
	tls_size_batch(ts);
	ch->lower = ch->ops;
	ch->ops = &mig_channel_tls;
	ch->tls = ts;
	return 0;
}

int mig_tls_client(struct mig_channel *ch, const struct mig_tls *t, const char *host,
		   int timeout_ms, char *why, size_t len)
{
	return tls_start(ch, t, false, host, timeout_ms, -1, why, len);
}

/*
 * A refused peer gets our alert, then the end of the stream; what it sent
 * meanwhile is read and dropped (bounded), so that closing does not reset
 * the connection before it could read the alert.
 */
static void tls_linger(int fd)
{
	uint64_t end = tls_now_ms() + 1000;
	char sink[4096];
	int left;

	shutdown(fd, SHUT_WR);
	for (unsigned i = 0; i < 256 && (left = tls_left_ms(end)) > 0; i++) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, left) <= 0 || recv(fd, sink, sizeof(sink), MSG_DONTWAIT) <= 0)
			break;
	}
}

int mig_tls_accept(struct mig_listener *l, struct mig_channel *ch, int timeout_ms, int intr_fd)
{
	uint64_t end = timeout_ms < 0 ? 0 : tls_now_ms() + (uint64_t)timeout_ms;
	char why[512];

	for (;;) {
		int left = timeout_ms < 0 ? -1 : tls_left_ms(end);
		int err = l->ops->accept(l, ch, left, intr_fd);
		if (err)
			return err;
		int hs = left < 0 || left > TLS_HANDSHAKE_MS ? TLS_HANDSHAKE_MS : left;
		err = tls_start(ch, l->tls, true, NULL, hs, intr_fd, why, sizeof(why));
		if (!err)
			return 0;
		if (err == -ECONNREFUSED)
			tls_linger(ch->fd);
		l->ops->close(ch);
		if (err == -EINTR || err == -ENOMEM)
			return err;
		pr_warn("refused a source on %s: %s; still waiting for one", l->addr, why);
		if (timeout_ms >= 0 && !tls_left_ms(end))
			return -ETIMEDOUT;
	}
}

/* Record why a read (rd) or write failed: the first reason each way stays. */
static int tls_fail(struct mig_tls_session *ts, ssize_t r, bool rd)
{
	char *why = rd ? ts->rd_why : ts->wr_why;

	switch (r) {
	case GNUTLS_E_AGAIN:
		return -EAGAIN;
	case GNUTLS_E_INTERRUPTED:
		return -EINTR;
	case GNUTLS_E_PULL_ERROR:
		return -(ts->rd_errno ? ts->rd_errno : EIO);
	case GNUTLS_E_PUSH_ERROR:
		return -(ts->wr_errno ? ts->wr_errno : EIO);
	}
	if (!why[0]) {
		if (r == GNUTLS_E_FATAL_ALERT_RECEIVED)
			snprintf(why, sizeof(ts->rd_why), "the %s ended the TLS session (alert: %s)",
				 ts->server ? "source" : "destination",
				 gnutls_alert_get_name(gnutls_alert_get(ts->s)));
		else
			snprintf(why, sizeof(ts->rd_why), "TLS: %s", gnutls_strerror((int)r));
		__atomic_store_n(&ts->last, rd ? 1 : 2, __ATOMIC_RELEASE);
	}
	/* The session is unusable, as a connection that was reset. */
	return -ECONNRESET;
}

static ssize_t tls_read(struct mig_channel *ch, void *buf, size_t len)
{
	struct mig_tls_session *ts = ch->tls;
	size_t got = 0;

	/* Several records per call while they are there: fewer trips through the stream. */
	while (got < len) {
		ssize_t n = gnutls_record_recv(ts->s, (uint8_t *)buf + got, len - got);
		if (n > 0) {
			got += (size_t)n;
			continue;
		}
		if (n == 0 || n == GNUTLS_E_PREMATURE_TERMINATION)
			break;	/* the end; a cut stream is the stream's to notice */
		int err = tls_fail(ts, n, true);	/* keeps the first reason */
		if (got)
			break;	/* the error comes again on the next call */
		return err;
	}
	return (ssize_t)got;
}

/*
 * Send what the batch holds.  Returns the plaintext of the records that
 * now lie whole with the kernel and were not reported yet, -EAGAIN when
 * none did, or -errno.
 */
static ssize_t tls_batch_flush(struct mig_tls_session *ts)
{
	size_t plain = 0;

	while (ts->wb_sent < ts->wb_len) {
		ssize_t n = send(ts->fd, ts->wb + ts->wb_sent, ts->wb_len - ts->wb_sent,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			ts->wr_errno = errno;
			return -errno;
		}
		if (n <= 0)
			break;
		ts->wb_sent += (size_t)n;
	}
	while (ts->rec_done < ts->rec_n && ts->rec[ts->rec_done].end <= ts->wb_sent)
		plain += ts->rec[ts->rec_done++].plain;
	if (ts->wb_sent == ts->wb_len)
		ts->wb_len = ts->wb_sent = ts->rec_n = ts->rec_done = 0;
	return plain ? (ssize_t)plain : -EAGAIN;
}

/*
 * GnuTLS encrypts a record, which then goes into the batch (tls_push);
 * up to TLS_BATCH of them leave in one sendmsg().  A record counts as
 * written only once all of its ciphertext reached the kernel, and the
 * peer can never decrypt part of one: so "not one byte of GO was
 * written" still means the destination cannot have GO (switchover.c).
 * Records encrypted but not (wholly) sent are ours already: the caller
 * offers their bytes again (stream.c re-offers what was not counted
 * written) and they go out first, without being encrypted twice.
 */
static ssize_t tls_writev(struct mig_channel *ch, const struct iovec *iov, int iovcnt)
{
	struct mig_tls_session *ts = ch->tls;
	size_t total = 0;
	ssize_t n;

	if (ts->rec_done < ts->rec_n) {
		size_t owed = 0, offered = 0;
		for (unsigned i = ts->rec_done; i < ts->rec_n; i++)
			owed += ts->rec[i].plain;
		for (int i = 0; i < iovcnt; i++)
			offered += iov[i].iov_len;
		if (offered < owed)
			return -EINVAL;	/* not the bytes we took: a caller's bug */
		return tls_batch_flush(ts);
	}
	ts->wr_thread = pthread_self();
	__atomic_store_n(&ts->batching, true, __ATOMIC_RELEASE);
	for (int i = 0; i < iovcnt && (!total || total < ts->batch_max); i++) {
		const uint8_t *p = iov[i].iov_base;
		size_t off = 0;

		while (off < iov[i].iov_len && (!total || total < ts->batch_max) &&
		       ts->rec_n < TLS_BATCH_RECORDS &&
		       TLS_WB_SIZE - ts->wb_len >= TLS_RECORD_MAX + TLS_BATCH_ROOM) {
			size_t want = iov[i].iov_len - off;
			want = want < TLS_RECORD_MAX ? want : TLS_RECORD_MAX;
			n = gnutls_record_send(ts->s, p + off, want);
			if (n <= 0) {
				__atomic_store_n(&ts->batching, false, __ATOMIC_RELEASE);
				int err = tls_fail(ts, n ? n : GNUTLS_E_INTERNAL_ERROR, false);
				/* Records before this one are whole: send them first. */
				if (ts->rec_n) {
					ssize_t sent = tls_batch_flush(ts);
					return sent > 0 ? sent : err;
				}
				return err;
			}
			ts->rec[ts->rec_n].end = ts->wb_len;
			ts->rec[ts->rec_n].plain = (size_t)n;
			ts->rec_n++;
			off += (size_t)n;
			total += (size_t)n;
		}
		if (off < iov[i].iov_len)
			break;
	}
	__atomic_store_n(&ts->batching, false, __ATOMIC_RELEASE);
	return ts->rec_n ? tls_batch_flush(ts) : 0;
}

static bool tls_pending(struct mig_channel *ch)
{
	return gnutls_record_check_pending(ch->tls->s) > 0 || ch->tls->ra_pos < ch->tls->ra_len;
}

static const char *tls_strerror(struct mig_channel *ch, int err)
{
	int last = __atomic_load_n(&ch->tls->last, __ATOMIC_ACQUIRE);

	if (err == -ECONNRESET && last)
		return last == 1 ? ch->tls->rd_why : ch->tls->wr_why;
	return strerror(-err);
}

/* A cut, not a close_notify: the stream ends itself (END, RESULT), and a cut must not block. */
static int tls_shutdown(struct mig_channel *ch, bool rd, bool wr)
{
	return ch->lower->shutdown(ch, rd, wr);
}

static void tls_set_buffers(struct mig_channel *ch, int sndbuf, int rcvbuf)
{
	if (ch->lower->set_buffers)
		ch->lower->set_buffers(ch, sndbuf, rcvbuf);
	tls_size_batch(ch->tls);
}

static void tls_close(struct mig_channel *ch)
{
	tls_free(ch->tls);
	ch->tls = NULL;
	ch->lower->close(ch);
}

/*
 * The socket's count only: records a short write left in the session's
 * buffer belong to the writing thread, and the next write sends them.
 */
static uint64_t tls_unsent(struct mig_channel *ch)
{
	return ch->lower->unsent ? ch->lower->unsent(ch) : 0;
}

const struct mig_channel_ops mig_channel_tls = {
	.scheme = "tls", .syntax = "--tls-creds DIR with tcp:HOST:PORT or unix:PATH",
	.return_path = true, .eof_err = -EPIPE, .eof_why = "the peer closed the connection",
	.read = tls_read, .writev = tls_writev, .shutdown = tls_shutdown, .close = tls_close,
	.set_buffers = tls_set_buffers, .unsent = tls_unsent, .pending = tls_pending,
	.strerror = tls_strerror,
};
