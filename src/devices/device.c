/* The registry itself: one line per device model, in wire order. */
#include "devices/device.h"

#include "devices/debug_exit.h"
#include "devices/serial.h"
#include "devices/virtio/blk.h"
#include "devices/virtio/net.h"

const struct device_ops *const device_table[DEVICE_NR] = {
	[DEVICE_SERIAL]		= &serial_device_ops,
	[DEVICE_DEBUG_EXIT]	= &debug_exit_device_ops,
	[DEVICE_VIRTIO_BLK]	= &virtio_blk_device_ops,
	[DEVICE_VIRTIO_NET]	= &virtio_net_device_ops,
};
