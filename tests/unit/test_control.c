/* The control socket's framing and its answers to malformed requests. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <cmocka.h>

#include "control/client.h"
#include "control/control.h"

static char sock_path[64];
static struct control_server cs;

static int setup(void **state)
{
	snprintf(sock_path, sizeof(sock_path), "/tmp/ferry-ctl-test.%d.sock", getpid());
	/* No machine: nothing here may reach a command that needs one. */
	if (control_server_open(&cs, sock_path, NULL, NULL, false))
		return -1;
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_malformed_requests),
		cmocka_unit_test(test_id_is_echoed),
		cmocka_unit_test(test_line_too_long),
		cmocka_unit_test(test_client_library),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
