/*
 * The JSON control API on a unix socket: one request per line, one reply
 * per line (docs/api.md).  A thread of its own accepts clients and runs
 * commands from the table in commands.c.
 */
#ifndef FERRY_CONTROL_CONTROL_H
#define FERRY_CONTROL_CONTROL_H

#include <pthread.h>
#include <stdbool.h>

#include "control/commands.h"

#define CONTROL_MAX_CLIENTS 8
#define CONTROL_MAX_LINE    (64 * 1024)

struct control_client {
	int fd;
	size_t len;
	char buf[CONTROL_MAX_LINE];
};

struct control_server {
	/*
	 * The control thread owns clients[] and is the only one to change it;
	 * `lock` is taken for those changes and around every write, so events
	 * from other threads (control_server_broadcast) never cut into a reply.
	 */
	pthread_mutex_t lock;
	int listen_fd;
	int wake_fd[2];
	char *path;
	pthread_t thread;
	bool thread_started;
	struct control_ctx ctx;
	struct control_client *clients[CONTROL_MAX_CLIENTS];
};

/*
 * Listen on `path`; `test_hooks` enables the x-test-* commands.  A stale socket file left by a dead ferry is replaced;
 * a live one is not (-EADDRINUSE).  Returns 0 or -errno with a message.
 */
int control_server_open(struct control_server *cs, const char *path, struct machine *m,
			struct migration *mig, bool test_hooks) __attribute__((warn_unused_result));
/* Start serving in a thread.  Returns 0 or -errno. */
int control_server_start(struct control_server *cs) __attribute__((warn_unused_result));
/* Send an event line to every connected client.  Any thread. */
void control_server_broadcast(struct control_server *cs, json_object *event);
/* Stop serving commands; clients stay connected for broadcasts. */
void control_server_stop(struct control_server *cs);
/* Stop the thread, close clients and remove the socket file. */
void control_server_close(struct control_server *cs);

#endif
