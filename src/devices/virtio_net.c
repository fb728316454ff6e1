#define _GNU_SOURCE
#include "devices/virtio_net.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "core/vm.h"
#include "devices/virtio_pci.h"

#define VIRTIO_ID_NET 1
#define VIRTIO_NET_F_MAC (1ULL << 5)
#define VIRTIO_NET_F_STATUS (1ULL << 16)
#define VIRTIO_NET_F_CTRL_VQ (1ULL << 17)
#define VIRTIO_NET_F_GUEST_ANNOUNCE (1ULL << 21)
#define VIRTIO_NET_S_LINK_UP 1
#define VIRTIO_NET_S_ANNOUNCE 2
#define VIRTIO_NET_CTRL_RX 0
#define VIRTIO_NET_CTRL_MAC 1
#define VIRTIO_NET_CTRL_ANNOUNCE 3
#define VIRTIO_NET_CTRL_ANNOUNCE_ACK 0
#define VIRTIO_NET_OK 0
#define VIRTIO_NET_ERR 1
#define NET_HDR 12	/* virtio_net_hdr with num_buffers (VERSION_1) */
#define MAX_FRAME 65536
#define Q_RX 0
#define Q_TX 1
#define Q_CTRL 2
#define ANNOUNCE_ROUNDS 5

struct vnet {
	struct virtio_dev vd;
	int tap, wake;		/* TAP fd; eventfd that wakes the receive thread */
	char ifname[IFNAMSIZ];
	uint8_t mac[6];
	pthread_t rx_thread;
	bool rx_started;
	/* guarded by vd.lock */
	bool stop, paused, rx_pending, announce_after_resume;
	int announce_left;
	struct timespec announce_at;
	size_t pending_len;
	uint8_t pending[NET_HDR + MAX_FRAME];	/* a frame waiting for rx buffers */
	uint8_t txframe[MAX_FRAME];		/* transmit scratch (vd.lock held) */
	uint64_t rx_frames, tx_frames, rx_dropped, announces;
};

static struct vnet *vnet_of(struct virtio_dev *vd)
{
	return (struct vnet *)vd;
}

/* st.dev[0..1] = the config status word (migrates with the device) */
static uint16_t net_status(const struct virtio_dev *vd)
{
	return (uint16_t)(vd->st.dev[0] | vd->st.dev[1] << 8);
}

static void set_net_status(struct virtio_dev *vd, uint16_t s)
{
	vd->st.dev[0] = (uint8_t)s;
	vd->st.dev[1] = (uint8_t)(s >> 8);
}

static void net_cfg_read(struct virtio_dev *vd, unsigned off, uint8_t *data, unsigned size)
{
	uint8_t cfg[12] = { 0 };
	uint16_t st = net_status(vd);

	memcpy(cfg, vnet_of(vd)->mac, 6);
	cfg[6] = (uint8_t)st;
	cfg[7] = (uint8_t)(st >> 8);
	cfg[8] = 1;	/* max_virtqueue_pairs */
	memcpy(data, cfg + off, size);
}

static void kick_rx_thread(struct vnet *n)
{
	uint64_t one = 1;

	if (write(n->wake, &one, sizeof(one)) < 0) {
		/* eventfd cannot overflow with 1s */
	}
}

/* One frame from the guest to the TAP. */
static int net_tx(struct virtio_dev *vd, struct vq_elem *e, uint32_t *written)
{
	struct vnet *n = vnet_of(vd);
	size_t len;

	if (e->out_bytes <= NET_HDR || e->out_bytes - NET_HDR > MAX_FRAME)
		return 0;	/* not a frame: consumed and dropped */
	len = vq_copy_from_out(e, NET_HDR, n->txframe, MAX_FRAME);
	/* a full TAP queue drops the frame, like a congested wire */
	if (write(n->tap, n->txframe, len) == (ssize_t)len)
		n->tx_frames++;
	return 0;
}

/* One control-queue command: announce acknowledgements, RX/MAC filters. */
static int net_ctrl(struct virtio_dev *vd, struct vq_elem *e, uint32_t *written)
{
	uint8_t cmd[2] = { 0xff, 0xff }, ack = VIRTIO_NET_ERR;

	if (e->in_bytes < 1)
		return -EINVAL;
	if (vq_copy_from_out(e, 0, cmd, 2) == 2) {
		if (cmd[0] == VIRTIO_NET_CTRL_ANNOUNCE && cmd[1] == VIRTIO_NET_CTRL_ANNOUNCE_ACK) {
			set_net_status(vd, net_status(vd) & ~VIRTIO_NET_S_ANNOUNCE);
			ack = VIRTIO_NET_OK;
		} else if (cmd[0] == VIRTIO_NET_CTRL_RX || cmd[0] == VIRTIO_NET_CTRL_MAC) {
			ack = VIRTIO_NET_OK;	/* the TAP passes everything anyway */
		}
	}
	vq_copy_to_in(&vd->dev.vm->mem, e, e->in_bytes - 1, &ack, 1);
	*written = 1;
	return 0;
}

static void net_notify(struct virtio_dev *vd, unsigned q)
{
	struct vnet *n = vnet_of(vd);

	if (q == Q_TX)
		virtio_serve_queue(vd, q, net_tx);
	else if (q == Q_CTRL)
		virtio_serve_queue(vd, q, net_ctrl);
	else if (q == Q_RX && n->rx_pending)
		kick_rx_thread(n);	/* new receive buffers for a waiting frame */
}

static void net_reset(struct virtio_dev *vd)
{
	struct vnet *n = vnet_of(vd);

	set_net_status(vd, VIRTIO_NET_S_LINK_UP);
	n->rx_pending = false;
}

/* Deliver the pending frame if the guest has a buffer. Lock held. */
static void deliver_locked(struct vnet *n)
{
	struct virtio_dev *vd = &n->vd;
	struct guest_mem *mem = &vd->dev.vm->mem;
	struct vq_state *vq = &vd->st.q[Q_RX];
	struct vq_elem *e;
	struct kv_err err;
	int r;

	if (!n->rx_pending || n->paused || !virtio_driver_ok(vd) || !vq->enabled)
		return;
	e = malloc(sizeof(*e));
	if (!e)
		return;
	r = vq_pop(mem, vq, e, &err);
	if (r == 1) {
		if (e->in_bytes < n->pending_len) {
			n->rx_dropped++;	/* buffer too small: drop the frame */
		} else {
			vq_copy_to_in(mem, e, 0, n->pending, n->pending_len);
			n->rx_frames++;
		}
		n->rx_pending = false;
		if (vq_push(mem, vq, e, e->in_bytes < n->pending_len ? 0 : (uint32_t)n->pending_len,
			    &err))
			virtio_set_broken(vd, err.msg);
		else if (vq_wants_interrupt(mem, vq))
			virtio_notify_queue(vd, Q_RX);
	} else if (r < 0) {
		virtio_set_broken(vd, err.msg);
	}
	free(e);
}

void virtio_net_rarp_frame(const uint8_t mac[6], uint8_t f[60])
{
	memset(f, 0, 60);
	memset(f, 0xff, 6);		/* broadcast */
	memcpy(f + 6, mac, 6);		/* from the guest's MAC: switches learn it */
	f[12] = 0x80; f[13] = 0x35;	/* ethertype RARP */
	f[14] = 0; f[15] = 1;		/* hardware: Ethernet */
	f[16] = 0x08; f[17] = 0;	/* protocol: IPv4 */
	f[18] = 6; f[19] = 4;
	f[20] = 0; f[21] = 3;		/* reverse request */
	memcpy(f + 22, mac, 6);
	memcpy(f + 32, mac, 6);
}

static long ms_until(const struct timespec *t)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (t->tv_sec - now.tv_sec) * 1000 + (t->tv_nsec - now.tv_nsec) / 1000000;
}

/* One announce round: RARP from the host side; the guest is asked once. */
static void announce_round_locked(struct vnet *n)
{
	static const int delay_ms[ANNOUNCE_ROUNDS] = { 50, 150, 250, 350, 450 };
	uint8_t f[60];
	int round = ANNOUNCE_ROUNDS - n->announce_left;

	virtio_net_rarp_frame(n->mac, f);
	if (write(n->tap, f, sizeof(f)) == (ssize_t)sizeof(f))
		n->announces++;
	if (round == 0 && (n->vd.st.driver_features & VIRTIO_NET_F_GUEST_ANNOUNCE) &&
	    virtio_driver_ok(&n->vd)) {
		set_net_status(&n->vd, net_status(&n->vd) | VIRTIO_NET_S_ANNOUNCE);
		virtio_notify_config(&n->vd);
	}
	n->announce_left--;
	clock_gettime(CLOCK_MONOTONIC, &n->announce_at);
	n->announce_at.tv_nsec += (long)delay_ms[round] * 1000000L;
	while (n->announce_at.tv_nsec >= 1000000000L) {
		n->announce_at.tv_sec++;
		n->announce_at.tv_nsec -= 1000000000L;
	}
}

static void *rx_main(void *arg)
{
	struct vnet *n = arg;
	char name[16];

	snprintf(name, sizeof(name), "rx-%.12s", n->ifname);
	pthread_setname_np(pthread_self(), name);
	for (;;) {
		struct pollfd p[2] = { { .fd = n->wake, .events = POLLIN },
				       { .fd = n->tap, .events = POLLIN } };
		int timeout = -1, np;

		pthread_mutex_lock(&n->vd.lock);
		if (n->stop) {
			pthread_mutex_unlock(&n->vd.lock);
			return NULL;
		}
		if (!n->paused && n->announce_left > 0) {
			long ms = ms_until(&n->announce_at);
			if (ms <= 0) {
				announce_round_locked(n);
				ms = ms_until(&n->announce_at);
			}
			timeout = n->announce_left > 0 ? (int)(ms > 0 ? ms : 0) : -1;
		}
		deliver_locked(n);
		/* read the TAP only when a frame can go somewhere */
		np = (n->rx_pending || n->paused) ? 1 : 2;
		pthread_mutex_unlock(&n->vd.lock);

		if (poll(p, (nfds_t)np, timeout) <= 0)
			continue;
		if (p[0].revents & POLLIN) {
			uint64_t v;
			if (read(n->wake, &v, sizeof(v)) < 0) {
				/* spurious */
			}
		}
		if (np == 2 && (p[1].revents & POLLIN)) {
			pthread_mutex_lock(&n->vd.lock);
			if (!n->rx_pending && !n->paused) {
				ssize_t r = read(n->tap, n->pending + NET_HDR, MAX_FRAME);
				if (r > 0) {
					memset(n->pending, 0, NET_HDR);
					n->pending[10] = 1;	/* num_buffers */
					n->pending_len = NET_HDR + (size_t)r;
					n->rx_pending = true;
					if (!virtio_driver_ok(&n->vd) || !n->vd.st.q[Q_RX].enabled) {
						n->rx_pending = false;	/* no driver: the wire drops it */
						n->rx_dropped++;
					}
				}
			}
			pthread_mutex_unlock(&n->vd.lock);
		}
	}
}

static void net_pause(struct device *dev)
{
	struct vnet *n = vnet_of(virtio_from_device(dev));

	/* Taking the lock waits for a delivery in progress; after this no
	 * thread of ours writes guest memory until resume. */
	pthread_mutex_lock(&n->vd.lock);
	n->paused = true;
	pthread_mutex_unlock(&n->vd.lock);
	kick_rx_thread(n);
}

static void net_resume(struct device *dev)
{
	struct vnet *n = vnet_of(virtio_from_device(dev));

	pthread_mutex_lock(&n->vd.lock);
	n->paused = false;
	if (n->announce_after_resume) {
		n->announce_after_resume = false;
		n->announce_left = ANNOUNCE_ROUNDS;
		clock_gettime(CLOCK_MONOTONIC, &n->announce_at);	/* round 1: now */
	}
	pthread_mutex_unlock(&n->vd.lock);
	kick_rx_thread(n);
}

static int net_post_load(struct device *dev, struct kv_err *err)
{
	struct vnet *n = vnet_of(virtio_from_device(dev));
	int r = virtio_post_load(dev, err);

	if (!r)
		n->announce_after_resume = true;	/* we are on a new port now */
	return r;
}

static void net_destroy(struct device *dev)
{
	struct vnet *n = vnet_of(virtio_from_device(dev));

	if (n->rx_started) {
		pthread_mutex_lock(&n->vd.lock);
		n->stop = true;
		pthread_mutex_unlock(&n->vd.lock);
		kick_rx_thread(n);
		pthread_join(n->rx_thread, NULL);
	}
	if (n->tap >= 0)
		close(n->tap);
	if (n->wake >= 0)
		close(n->wake);
	virtio_pci_fini(&n->vd);
	free(n);
}

static const struct virtio_ops net_vops = {
	.device_id = VIRTIO_ID_NET,
	.pci_class = 0x020000,	/* Ethernet controller */
	.features = VIRTIO_NET_F_MAC | VIRTIO_NET_F_STATUS | VIRTIO_NET_F_CTRL_VQ |
		    VIRTIO_NET_F_GUEST_ANNOUNCE,
	.nqueues = 3,
	.queue_max = 256,
	.cfg_size = 12,
	.cfg_read = net_cfg_read,
	.notify = net_notify,
	.reset = net_reset,
};

static int net_handover_fd(struct device *dev)
{
	return vnet_of(virtio_from_device(dev))->tap;
}

static void net_spec(struct device *dev, struct dev_spec *out)
{
	struct vnet *n = vnet_of(virtio_from_device(dev));

	snprintf(out->tap, sizeof(out->tap), "%s", n->ifname);
	memcpy(out->mac, n->mac, 6);
}

static const struct dev_ops net_ops = {
	.type = "virtio-net",
	.pause = net_pause,
	.resume = net_resume,
	.destroy = net_destroy,
	.state = &virtio_vmstate,
	.state_ptr = virtio_state_ptr,
	.post_load = net_post_load,
	.spec = net_spec,
	.handover_fd = net_handover_fd,
};

static int open_tap(const char *ifname, struct kv_err *err)
{
	struct ifreq ifr;
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);

	if (fd < 0)
		return kv_errf_sys(err, errno, "/dev/net/tun");
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		int e = errno;
		close(fd);
		return kv_errf_sys(err, e, "TAP %s", ifname);
	}
	return fd;
}

/* A TAP fd from the previous VMM: it must be a TAP, attached to ifname. */
static int adopt_tap(int fd, const char *ifname, struct kv_err *err)
{
	struct ifreq ifr;
	int d;

	memset(&ifr, 0, sizeof(ifr));
	if (ioctl(fd, TUNGETIFF, &ifr) < 0)
		return kv_errf(err, EINVAL, "the fd handed over for TAP %s is not a TAP", ifname);
	if (!(ifr.ifr_flags & IFF_TAP) || strncmp(ifr.ifr_name, ifname, IFNAMSIZ))
		return kv_errf(err, EINVAL, "the fd handed over for TAP %s is attached to %.*s",
			       ifname, IFNAMSIZ, ifr.ifr_name);
	d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (d < 0)
		return kv_errf_sys(err, errno, "dup of the TAP fd");
	fcntl(d, F_SETFL, fcntl(d, F_GETFL) | O_NONBLOCK);
	return d;
}

int virtio_net_create(struct device **out, struct vm *vm, struct pci_host *host,
		      const char *name, const char *tap, const uint8_t mac[6], int tapfd,
		      struct kv_err *err)
{
	struct vnet *n = calloc(1, sizeof(*n));
	int r;

	if (!n)
		return kv_errf(err, ENOMEM, "network device");
	n->tap = n->wake = -1;
	if (strlen(tap) >= IFNAMSIZ) {
		free(n);
		return kv_errf(err, ENAMETOOLONG, "TAP name '%s' too long", tap);
	}
	strcpy(n->ifname, tap);
	memcpy(n->mac, mac, 6);
	n->tap = tapfd >= 0 ? adopt_tap(tapfd, tap, err) : open_tap(tap, err);
	n->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (n->tap < 0 || n->wake < 0) {
		r = n->tap < 0 ? n->tap : kv_errf_sys(err, errno, "eventfd");
		if (n->tap >= 0)
			close(n->tap);
		if (n->wake >= 0)
			close(n->wake);
		free(n);
		return r;
	}
	set_net_status(&n->vd, VIRTIO_NET_S_LINK_UP);
	/* no guest memory writes before the VM first runs (a destination is
	 * still loading state then): vm_start() resumes us */
	n->paused = true;
	r = virtio_pci_init(&n->vd, vm, host, name, &net_ops, &net_vops, err);
	if (r)
		return r;	/* the VM owns it now and frees it */
	r = pthread_create(&n->rx_thread, NULL, rx_main, n);
	if (r)
		return kv_errf_sys(err, r, "starting the receive thread");
	n->rx_started = true;
	*out = &n->vd.dev;
	return 0;
}
