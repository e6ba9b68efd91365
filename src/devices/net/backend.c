/* --net parsing, the backend table and the fd backend (tests). */
#include "devices/net/backend.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/parse.h"

/* The caller's fd (a socketpair end), dup'ed so that both sides close their own. */
static int net_fd_open(const struct net_config *c, unsigned hdr_len, char *why, size_t whylen)
{
	int fd = fcntl(c->fd, F_DUPFD_CLOEXEC, 0);

	(void)hdr_len;	/* the peer writes the header itself */
	if (fd < 0 || fcntl(fd, F_SETFL, O_NONBLOCK) < 0) {
		int err = -errno;
		snprintf(why, whylen, "fd %d: %s", c->fd, strerror(-err));
		if (fd >= 0)
			close(fd);
		return err;
	}
	return fd;
}

static const struct net_backend_ops net_backend_fd_ops = {
	.name = "fd",
	.open = net_fd_open,
};

static const struct net_backend_ops *const net_backend_table[NET_BACKEND_NR] = {
	[NET_BACKEND_TAP] = &net_backend_tap_ops,
	[NET_BACKEND_FD] = &net_backend_fd_ops,
};

int net_backend_open(struct net_backend *be, const struct net_config *c, unsigned hdr_len,
		     char *why, size_t whylen)
{
	be->kind = c->kind;
	be->fd = -1;
	if ((unsigned)c->kind >= NET_BACKEND_NR) {
		snprintf(why, whylen, "no such backend");
		return -EINVAL;
	}
	int fd = net_backend_table[c->kind]->open(c, hdr_len, why, whylen);
	if (fd < 0)
		return fd;
	be->fd = fd;
	return 0;
}

void net_backend_close(struct net_backend *be)
{
	if (be->fd >= 0)
		close(be->fd);
	be->fd = -1;
}

void net_mac_format(const uint8_t mac[6], char *buf)
{
	snprintf(buf, 18, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3],
		 mac[4], mac[5]);
}

/* "aa:bb:cc:dd:ee:ff", a unicast address.  Returns 0 or -EINVAL. */
static int net_mac_parse(const char *s, uint8_t mac[6])
{
	unsigned b[6];
	char end;

	if (strlen(s) != 17 || sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3],
				      &b[4], &b[5], &end) != 6)
		return -EINVAL;
	for (unsigned i = 0; i < 6; i++) {
		if (s[3 * i + 2] != (i < 5 ? ':' : '\0'))
			return -EINVAL;
		mac[i] = (uint8_t)b[i];
	}
	/* A multicast source address would be dropped by every bridge. */
	return (mac[0] & 1) ? -EINVAL : 0;
}

static int net_config_value(const char *key, const char *val, struct net_config *c, char *why,
			    size_t whylen)
{
	if (!strcmp(key, "tap")) {
		if (!val[0] || strlen(val) >= sizeof(c->ifname) || strchr(val, '/')) {
			snprintf(why, whylen, "tap=%s: not an interface name (1 to %zu characters)",
				 val, sizeof(c->ifname) - 1);
			return -EINVAL;
		}
		c->kind = NET_BACKEND_TAP;
		strcpy(c->ifname, val);
		return 0;
	}
	if (!strcmp(key, "mac")) {
		if (net_mac_parse(val, c->mac)) {
			snprintf(why, whylen, "mac=%s: use six hex bytes like 52:54:00:12:34:56 "
				 "(unicast)", val);
			return -EINVAL;
		}
		c->mac_set = true;
		return 0;
	}
	snprintf(why, whylen, "unknown key '%s' (tap=, mac=)", key);
	return -EINVAL;
}

static int net_config_pair(const char *key, const char *val, void *opaque, char *why,
			   size_t whylen)
{
	return net_config_value(key, val, opaque, why, whylen);
}

int net_config_parse(const char *spec, struct net_config *c, char *why, size_t whylen)
{
	int err;

	memset(c, 0, sizeof(*c));
	c->fd = -1;
	err = parse_kv_list(spec, net_config_pair, c, why, whylen);
	if (!err && !c->ifname[0]) {
		snprintf(why, whylen, "tap=IFNAME is missing");
		err = -EINVAL;
	}
	return err;
}
