/* The control socket's framing and its answers to malformed requests. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <cmocka.h>

#include "control/client.h"
#include "control/control.h"

/* Short, but long enough that a loaded machine finishes the busy check first. */
#define IDLE_MS 3000

static char sock_path[64];
static struct control_server cs;

static int setup(void **state)
{
	snprintf(sock_path, sizeof(sock_path), "/tmp/ferry-ctl-test.%d.sock", getpid());
	/* No machine: nothing here may reach a command that needs one. */
	if (control_server_open(&cs, sock_path, NULL, NULL, false))
		return -1;
	cs.idle_ms = IDLE_MS;
	return control_server_start(&cs);
}

static int teardown(void **state)
{
	control_server_close(&cs);
	return 0;
}

/* Send raw bytes, return the first reply line (malloc'd) or NULL. */
static char *raw_exchange(const char *bytes, size_t len)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char *buf = calloc(1, 4096);
	size_t got = 0;
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	strcpy(sa.sun_path, sock_path);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	for (size_t off = 0; off < len;) {
		ssize_t n = send(fd, bytes + off, len - off, MSG_NOSIGNAL);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	while (got < 4095) {
		ssize_t n = recv(fd, buf + got, 4095 - got, 0);
		if (n <= 0)
			break;
		got += (size_t)n;
		if (memchr(buf, '\n', got))
			break;
	}
	close(fd);
	return buf;
}

static void expect_error(const char *request, const char *cls)
{
	char *reply = raw_exchange(request, strlen(request));
	char want[64];

	snprintf(want, sizeof(want), "\"class\":\"%s\"", cls);
	if (!strstr(reply, want))
		fail_msg("request %s: reply %s lacks %s", request, reply, want);
	free(reply);
}

static void test_malformed_requests(void **state)
{
	expect_error("not json\n", "ParseError");
	expect_error("[1,2,3]\n", "ParseError");
	expect_error("{\"execute\": 5}\n", "BadRequest");
	expect_error("{\"command\": \"status\"}\n", "BadRequest");
	expect_error("{\"execute\": \"status\", \"arguments\": 3}\n", "BadRequest");
	expect_error("{\"execute\": \"format-disk\"}\n", "CommandNotFound");
	expect_error("{\"execute\": \"x-test-corrupt\", \"arguments\": {\"gpa\": 0}}\n",
		     "GenericError");
}

/* request gets a GenericError whose text holds each of the NULL-ended `words`. */
static void expect_refusal(const char *request, ...)
{
	char *reply = raw_exchange(request, strlen(request));
	va_list ap;

	if (!strstr(reply, "\"class\":\"GenericError\""))
		fail_msg("request %s: reply %s is not a GenericError", request, reply);
	va_start(ap, request);
	for (const char *w; (w = va_arg(ap, const char *));)
		if (!strstr(reply, w))
			fail_msg("request %s: reply %s does not say %s", request, reply, w);
	va_end(ap);
	free(reply);
}

/*
 * Every command's arguments are checked against its table before the
 * handler runs: a null (which once crashed migrate), a wrong type, a
 * missing or an unknown key is named in the answer, and the server goes on.
 */
static void test_argument_checks(void **state)
{
	expect_refusal("{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"unix:/x\",\"mode\":null}}\n",
		       "'mode'", "a string", "not null", NULL);
	expect_refusal("{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"unix:/x\","
		       "\"on-timeout\":null}}\n", "'on-timeout'", "not null", NULL);
	expect_refusal("{\"execute\":\"migrate\",\"arguments\":{\"uri\":5}}\n",
		       "'uri'", "a string", NULL);
	expect_refusal("{\"execute\":\"migrate\",\"arguments\":{}}\n",
		       "needs argument 'uri'", NULL);
	expect_refusal("{\"execute\":\"migrate\"}\n", "needs argument 'uri'", NULL);
	expect_refusal("{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"unix:/x\",\"bogus\":1}}\n",
		       "no argument 'bogus'", NULL);
	expect_refusal("{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"unix:/x\",\"verify\":\"yes\"}}\n",
		       "'verify'", "true or false", NULL);
	expect_refusal("{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"unix:/x\",\"bandwidth\":1.5}}\n",
		       "'bandwidth'", "a fraction", NULL);
	expect_refusal("{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"unix:/x\",\"copy-storage\":true,"
		       "\"copy-storage-mode\":\"sometimes\"}}\n", "'copy-storage-mode' must be", NULL);
	expect_refusal("{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"unix:/x\","
		       "\"copy-storage-mode\":\"write-blocking\"}}\n", "needs 'copy-storage'", NULL);
	expect_refusal("{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"unix:/x\",\"copy-storage\":true,"
		       "\"copy-storage-mode\":5}}\n", "'copy-storage-mode'", "a string", NULL);
	expect_refusal("{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"unix:/x\",\"channels\":17}}\n",
		       "'channels' must be 1..16", NULL);
	expect_refusal("{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"unix:/x\",\"channels\":0}}\n",
		       "'channels' must be 1..16", NULL);
	expect_refusal("{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"file:/x\",\"channels\":2}}\n",
		       "'channels' above 1 needs a connection", NULL);
	expect_refusal("{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"file:/x\","
		       "\"postcopy-preempt\":true}}\n", "'postcopy-preempt' needs a connection", NULL);
	expect_refusal("{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"unix:/x\","
		       "\"postcopy-preempt\":1}}\n", "'postcopy-preempt'", "true or false", NULL);
	expect_refusal("{\"execute\":\"migrate-set-parameters\",\"arguments\":{\"bandwidth\":-1}}\n",
		       "'bandwidth'", "non-negative", NULL);
	expect_refusal("{\"execute\":\"migrate-resolve\",\"arguments\":{\"action\":null}}\n",
		       "'action'", NULL);
	expect_refusal("{\"execute\":\"migrate-resolve\",\"arguments\":{\"action\":[\"run\"]}}\n",
		       "'action'", "an array", NULL);
	expect_refusal("{\"execute\":\"status\",\"arguments\":{\"verbose\":true}}\n",
		       "status takes no argument 'verbose'", NULL);
	expect_refusal("{\"execute\":\"quit\",\"arguments\":{\"now\":null}}\n",
		       "quit takes no argument 'now'", NULL);
	/* Still serving. */
	expect_error("{\"execute\": \"nope\"}\n", "CommandNotFound");
}

/* Whoever connects controls the VM: the socket file is the owner's alone. */
static void test_socket_owner_only(void **state)
{
	struct stat st;

	assert_int_equal(stat(sock_path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	if ((st.st_mode & 0777) != 0600)
		fail_msg("control socket mode is %o, want 600", st.st_mode & 0777);
}

static void test_id_is_echoed(void **state)
{
	char *reply = raw_exchange("{\"execute\": \"nope\", \"id\": {\"n\": 42}}\n", 38);

	assert_non_null(strstr(reply, "\"id\":{\"n\":42}"));
	free(reply);
}

static void test_line_too_long(void **state)
{
	size_t len = CONTROL_MAX_LINE + 100;
	char *big = malloc(len);

	memset(big, 'a', len);
	char *reply = raw_exchange(big, len);
	assert_non_null(strstr(reply, "too long"));
	free(reply);
	free(big);
	/* The server is still there for the next client. */
	expect_error("{\"execute\": \"nope\"}\n", "CommandNotFound");
}

static void test_client_library(void **state)
{
	json_object *reply = NULL, *err;

	assert_int_equal(control_client_call(sock_path, "nope", NULL, 5000, &reply), 0);
	assert_true(json_object_object_get_ex(reply, "error", &err));
	json_object_put(reply);
	assert_int_equal(control_client_call("/tmp/ferry-no-such.sock", "status", NULL, 1000, &reply),
			 -ENOENT);
}

static int connect_raw(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	strcpy(sa.sun_path, sock_path);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* Read one line within timeout_ms into buf; returns its length or -1. */
static ssize_t read_line(int fd, char *buf, size_t cap, int timeout_ms)
{
	size_t got = 0;

	while (got < cap - 1) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, timeout_ms) <= 0)
			return -1;
		ssize_t n = recv(fd, buf + got, 1, 0);
		if (n <= 0)
			return -1;
		if (buf[got++] == '\n')
			break;
	}
	buf[got] = '\0';
	return (ssize_t)got;
}

/*
 * A client that sends requests and never reads the replies fills its
 * socket.  That must cost only that client: the control thread still
 * serves others, a broadcast from another thread (the migration's end
 * event) returns at once and reaches the others, and the stalled client is
 * disconnected.  alarm() makes a blocked server a failure, not a hang.
 */
static void test_stalled_client(void **state)
{
	static const char req[] = "{\"execute\": \"nope\"}\n";
	char line[512];
	int stalled = connect_raw(), good;
	size_t sent = 0;

	alarm(20);
	for (int idle = 0; idle < 100 && sent < (8u << 20);) {
		ssize_t n = send(stalled, req, sizeof(req) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n > 0) {
			sent += (size_t)n;
			idle = 0;
		} else if (n < 0 && errno == EAGAIN) {
			usleep(10000);
			idle++;
		} else {
			break;		/* the server hung up on it */
		}
	}
	good = connect_raw();
	assert_int_equal(send(good, req, sizeof(req) - 1, MSG_NOSIGNAL), (ssize_t)sizeof(req) - 1);
	assert_true(read_line(good, line, sizeof(line), 5000) > 0);
	assert_non_null(strstr(line, "CommandNotFound"));

	json_object *ev = json_object_new_object();
	json_object_object_add(ev, "event", json_object_new_string("TEST"));
	control_server_broadcast(&cs, ev);
	json_object_put(ev);
	assert_true(read_line(good, line, sizeof(line), 5000) > 0);
	assert_non_null(strstr(line, "\"TEST\""));

	/* The stalled client was cut off: after what was queued comes EOF. */
	for (;;) {
		struct pollfd p = { .fd = stalled, .events = POLLIN };
		assert_int_equal(poll(&p, 1, 5000), 1);
		ssize_t n = recv(stalled, line, sizeof(line), 0);
		if (n <= 0)
			break;
	}
	alarm(0);
	close(stalled);
	close(good);
}

/* The desc of reply's error, or "" (reply's). */
static const char *error_class(json_object *reply)
{
	json_object *e, *c;

	if (json_object_object_get_ex(reply, "error", &e) && json_object_object_get_ex(e, "class", &c))
		return json_object_get_string(c);
	return "";
}

/*
 * Eight idle connections take every slot.  A ninth client is told Busy in
 * words (the CLI once said "Broken pipe"); once the idle ones have been
 * silent for IDLE_MS, the quietest gives way and the newcomer is served.
 */
static void test_idle_clients_give_way(void **state)
{
	static const char req[] = "{\"execute\": \"nope\"}\n";
	int idle[CONTROL_MAX_CLIENTS];
	char line[512];
	json_object *reply = NULL;

	alarm(60);
	for (int i = 0; i < CONTROL_MAX_CLIENTS; i++) {
		/* One exchange each: the server has surely taken it into a slot. */
		idle[i] = connect_raw();
		assert_int_equal(send(idle[i], req, sizeof(req) - 1, MSG_NOSIGNAL),
				 (ssize_t)sizeof(req) - 1);
		assert_true(read_line(idle[i], line, sizeof(line), 5000) > 0);
	}
	assert_int_equal(control_client_call(sock_path, "nope", NULL, 5000, &reply), 0);
	assert_string_equal(error_class(reply), "Busy");
	json_object *e;
	assert_true(json_object_object_get_ex(reply, "error", &e));
	assert_non_null(strstr(json_object_to_json_string(e), "in use"));
	json_object_put(reply);

	bool served = false;
	for (int tries = 0; tries < 150 && !served; tries++) {
		reply = NULL;
		if (!control_client_call(sock_path, "nope", NULL, 5000, &reply))
			served = !strcmp(error_class(reply), "CommandNotFound");
		json_object_put(reply);
		if (!served)
			usleep(100000);
	}
	assert_true(served);
	/* The one that gave way was told why, then hung up on. */
	int told = 0;
	for (int i = 0; i < CONTROL_MAX_CLIENTS; i++) {
		struct pollfd p = { .fd = idle[i], .events = POLLIN };
		if (poll(&p, 1, 0) == 1 && read_line(idle[i], line, sizeof(line), 1000) > 0 &&
		    strstr(line, "\"Timeout\""))
			told++;
		close(idle[i]);
	}
	assert_true(told >= 1);
	alarm(0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_malformed_requests),
		cmocka_unit_test(test_argument_checks),
		cmocka_unit_test(test_socket_owner_only),
		cmocka_unit_test(test_id_is_echoed),
		cmocka_unit_test(test_line_too_long),
		cmocka_unit_test(test_client_library),
		cmocka_unit_test(test_stalled_client),
		cmocka_unit_test(test_idle_clients_give_way),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
