/*
 * The tap backend: /dev/net/tun opened as IFF_TAP | IFF_NO_PI |
 * IFF_VNET_HDR, so that each frame carries a virtio-net header of the
 * length we negotiated (TUNSETVNETHDRSZ), the same layout the guest uses.
 * No offloads are enabled (TUNSETOFFLOAD 0): the kernel hands us whole,
 * checksummed frames and accepts only such, matching the features the
 * device offers (no CSUM, no GSO).  The interface may exist already
 * (`ip tuntap add`, as a test or libvirt makes it) or is created here.
 */
#include "devices/net/backend.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static int net_tap_open(const struct net_config *c, unsigned hdr_len, char *why, size_t whylen)
{
	struct ifreq ifr;
	int sz = (int)hdr_len, err;
	int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0) {
		err = -errno;
		snprintf(why, whylen, "/dev/net/tun: %s", strerror(-err));
		return err;
	}
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	memcpy(ifr.ifr_name, c->ifname, strnlen(c->ifname, IFNAMSIZ - 1));
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		err = -errno;
		snprintf(why, whylen, "tap %s: %s%s", c->ifname, strerror(-err),
			 err == -EBUSY ? " (another process has it open)" :
			 err == -EPERM ? " (needs CAP_NET_ADMIN, or a tap owned by this user)" : "");
		goto fail;
	}
	if (ioctl(fd, TUNSETVNETHDRSZ, &sz) < 0 || ioctl(fd, TUNSETOFFLOAD, 0) < 0) {
		err = -errno;
		snprintf(why, whylen, "tap %s: cannot set the virtio-net header: %s", c->ifname,
			 strerror(-err));
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return err;
}

const struct net_backend_ops net_backend_tap_ops = {
	.name = "tap",
	.open = net_tap_open,
};
