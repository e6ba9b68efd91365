/*
 * The JSON control API on a unix socket: one request per line, one reply
 * per line (docs/api.md).  A thread of its own accepts clients and runs
 * commands from the table in commands.c.
 */
#ifndef FERRY_CONTROL_CONTROL_H
#define FERRY_CONTROL_CONTROL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "control/commands.h"

#define CONTROL_MAX_CLIENTS 8
#define CONTROL_MAX_LINE    (64 * 1024)

/*
 * A client silent this long gives its slot up to a newcomer when all are
 * taken (never otherwise: a client may wait quietly for events).
 */
#define CONTROL_IDLE_MS     10000

/* Output a client has not read yet; past this it is disconnected. */
#define CONTROL_MAX_QUEUE   (256 * 1024)

struct control_client {
	int fd;
	/* The request being read, and when it last sent: the control thread's own. */
	uint64_t last_ms;
	size_t len;
	char buf[CONTROL_MAX_LINE];
	/* Whole reply and event lines not yet sent; guarded by the server's lock. */
	char *out;
	size_t out_len, out_cap;
	bool dead;		/* its queue overflowed or its socket failed: drop it */
};

struct control_server {
	/*
	 * `lock` guards clients[] (the control thread alone adds and removes
	 * them), every client's output queue and `stopping`.  Replies (control
	 * thread) and events (control_server_broadcast, e.g. from the migration
	 * thread) are queued whole under it, so an event never cuts into a
	 * reply; only the control thread sends, never blocking, so a client
	 * that stops reading costs nobody but itself.
	 */
	pthread_mutex_t lock;
	bool stopping;
	struct control_client *clients[CONTROL_MAX_CLIENTS];

	/* Set at open; read-only while the thread runs. */
	int listen_fd;
	int wake_fd[2];		/* wakes the thread: output queued, or stop */
	unsigned idle_ms;	/* CONTROL_IDLE_MS; tests may lower it before start */
	char *path;
	pthread_t thread;
	bool thread_started;	/* the thread that opened and closes the server */
	struct control_ctx ctx;
};

/*
 * Listen on `path`; `test_hooks` enables the x-test-* commands.  A stale socket file left by a dead ferry is replaced;
 * a live one is not (-EADDRINUSE).  Returns 0 or -errno with a message.
 */
int control_server_open(struct control_server *cs, const char *path, struct machine *m,
			struct migration *mig, bool test_hooks) __attribute__((warn_unused_result));
/* Start serving in a thread.  Returns 0 or -errno. */
int control_server_start(struct control_server *cs) __attribute__((warn_unused_result));
/*
 * Queue an event line for every connected client; the control thread (or
 * control_server_close) sends it.  Never blocks.  Any thread.
 */
void control_server_broadcast(struct control_server *cs, json_object *event);
/* Stop serving commands; clients stay connected, events queue for close to send. */
void control_server_stop(struct control_server *cs);
/* Stop the thread, send what is queued (1 s at most), close clients, remove the socket file. */
void control_server_close(struct control_server *cs);

#endif
