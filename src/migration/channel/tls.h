/*
 * TLS for migration channels (tls.c): what the user asked for with
 * --tls-creds DIR and friends, and the calls channel.c makes to put a TLS
 * session over a connected socket.  docs/api.md, "TLS"; docs/security.md.
 *
 * DIR holds QEMU's file names.  x509: ca-cert.pem (the CA that signed the
 * peer), server-cert.pem and server-key.pem (destination), client-cert.pem
 * and client-key.pem (source, for mutual authentication).  PSK: keys.psk,
 * lines of IDENTITY:HEXKEY (the source uses the first line; the destination
 * accepts any).  A DIR with keys.psk and no ca-cert.pem is PSK, else x509.
 * A destination may also name a file of the sources it accepts (authz):
 * lines of certificate subject DNs as RFC 4514 writes them
 * ("CN=ferry-source,O=..."), or PSK identities.
 */
#ifndef FERRY_MIGRATION_CHANNEL_TLS_H
#define FERRY_MIGRATION_CHANNEL_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "migration/channel/channel.h"

#define MIG_TLS_DIR_MAX 1024

enum mig_tls_verify {
	MIG_TLS_VERIFY_AUTO,	/* destination: on when DIR has ca-cert.pem */
	MIG_TLS_VERIFY_OFF,
	MIG_TLS_VERIFY_ON,
};

/* Plain data, copied freely (migration parameters, incoming options). */
struct mig_tls {
	char dir[MIG_TLS_DIR_MAX];	/* "": TLS off */
	char hostname[256];		/* source: the name the certificate must carry
					   ("": the URI's host) */
	enum mig_tls_verify verify_peer;	/* destination: check the source's certificate */
	char authz[MIG_TLS_DIR_MAX];	/* destination: file of accepted identities ("": any) */
};

static inline bool mig_tls_enabled(const struct mig_tls *t)
{
	return t && t->dir[0];
}

/*
 * Check that t's credentials load for one side (server: the destination):
 * the files exist, parse, and match the mode.  0, or -errno with why.
 */
int mig_tls_check(const struct mig_tls *t, bool server, char *why, size_t len)
	__attribute__((warn_unused_result));

/*
 * Source: TLS over ch, connected to host (checked against the server's
 * certificate unless t->hostname overrides it; "": CA only), handshake
 * within timeout_ms.  0 with ch now a TLS channel, or -errno with why.
 */
int mig_tls_client(struct mig_channel *ch, const struct mig_tls *t, const char *host,
		   int timeout_ms, char *why, size_t len) __attribute__((warn_unused_result));

/*
 * Destination: accept from l until one source passes the TLS handshake;
 * the ones refused are logged with why.  As mig_channel_accept().
 */
int mig_tls_accept(struct mig_listener *l, struct mig_channel *ch, int timeout_ms, int intr_fd)
	__attribute__((warn_unused_result));

#endif
