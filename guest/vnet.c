/*
 * vnet.c - see vnet.h.
 *
 * Queues: 0 receive, 1 transmit, 2 control (VIRTIO_NET_F_CTRL_VQ, no
 * multiqueue). Receive descriptor i always points at receive buffer i,
 * transmit descriptor i at transmit buffer i, so a used entry's id names
 * the buffer. Every buffer starts with the 12-byte virtio_net_hdr of
 * VIRTIO_F_VERSION_1 (no offloads negotiated: all zeroes on transmit).
 * Completions are found in memory; the device is touched only to kick a
 * queue it wants kicked and, every STATUS_POLL_US, to read the status
 * word for VIRTIO_NET_S_ANNOUNCE.
 */
#include "vnet.h"

#include "console.h"
#include "lib.h"
#include "netproto.h"
#include "virtio.h"

#define NET_F_MAC (1ULL << 5)
#define NET_F_STATUS (1ULL << 16)
#define NET_F_CTRL_VQ (1ULL << 17)
#define NET_F_GUEST_ANNOUNCE (1ULL << 21)
#define NET_S_ANNOUNCE 2
#define CFG_MAC 0
#define CFG_STATUS 6
#define CTRL_ANNOUNCE 3		/* class */
#define CTRL_ANNOUNCE_ACK 0	/* command */
#define CTRL_OK 0

#define NET_HDR_LEN 12
#define RX_BUF_LEN (1526 + NET_HDR_LEN)
#define BUF_SLOT 2048
#define RX_BUFS 128
#define TX_BUFS 32
#define RX_PER_POLL 8		/* frames per vnet_poll: keeps the loop's steps short */
#define STATUS_POLL_US 20000

_Static_assert(NET_HDR_LEN + ETH_FRAME_MAX <= BUF_SLOT, "buffer size");

/* Device-visible memory: rings and buffers (guest RAM, identity mapped). */
static struct {
	uint8_t rxq[VQ_MEM_BYTES], txq[VQ_MEM_BYTES], ctlq[VQ_MEM_BYTES];
	uint8_t rx[RX_BUFS][BUF_SLOT];
	uint8_t tx[TX_BUFS][BUF_SLOT];
	uint8_t ctl_cmd[2];	/* class, command (no command data for ANNOUNCE_ACK) */
	uint8_t ctl_ack;
} mem __attribute__((section(".noinit"), aligned(4096)));

static struct {
	bool up, have_ip, announce, ctl_busy;
	struct virtio_dev dev;
	struct vq rx, tx, ctl;
	struct np_iface nif;
	uint16_t nrx, ntx, nfree;
	uint16_t free_tx[TX_BUFS];
	bool tx_busy[TX_BUFS], rx_busy[RX_BUFS];	/* owned by the device */
	uint64_t next_status_us;
	uint64_t rx_frames, tx_frames, arp, icmp, udp, announces, dropped;
	bool warned_rx, warned_tx, warned_ctl;
} N;

static bool send_frame(const uint8_t *frame, size_t len)
{
	uint16_t i;

	if (!N.nfree) {
		N.dropped++;	/* transmit ring full: the peer will retry */
		return false;
	}
	i = N.free_tx[--N.nfree];
	memset(mem.tx[i], 0, NET_HDR_LEN);
	memcpy(mem.tx[i] + NET_HDR_LEN, frame, len);
	vq_set_desc(&N.tx, i, mem.tx[i], (uint32_t)(NET_HDR_LEN + len), 0, 0);
	N.tx_busy[i] = true;
	vq_submit(&N.tx, i);
	N.tx_frames++;
	return true;
}

static void send_garp(void)
{
	uint8_t f[ETH_FRAME_MIN];

	if (N.have_ip)
		send_frame(f, np_gratuitous_arp(&N.nif, f));
}

static void reclaim_tx(void)
{
	for (uint16_t n = vq_used_ready(&N.tx); n; n--) {
		struct vq_used_elem e = vq_used_take(&N.tx);
		if (e.id < N.ntx && N.tx_busy[e.id]) {
			N.tx_busy[e.id] = false;
			N.free_tx[N.nfree++] = (uint16_t)e.id;
		} else if (!N.warned_tx) {
			N.warned_tx = true;
			con_line("WARN NET transmit completion for id %u that is not in flight", e.id);
		}
	}
}

static void post_rx(uint16_t i)
{
	vq_set_desc(&N.rx, i, mem.rx[i], RX_BUF_LEN, VQ_DESC_F_WRITE, 0);
	N.rx_busy[i] = true;
	vq_submit(&N.rx, i);
}

static void receive(void)
{
	uint8_t reply[ETH_FRAME_MAX];
	uint16_t n = vq_used_ready(&N.rx);

	if (n > N.nrx && !N.warned_rx) {
		N.warned_rx = true;
		con_line("WARN NET receive used index jumped by %u (ring of %u)", n, N.rx.size);
	}
	for (n = MIN(n, RX_PER_POLL); n; n--) {
		struct vq_used_elem e = vq_used_take(&N.rx);
		size_t out_len = 0;

		if (e.id >= N.nrx || !N.rx_busy[e.id]) {
			N.dropped++;	/* not a buffer the device has: nothing to re-post */
			if (!N.warned_rx) {
				N.warned_rx = true;
				con_line("WARN NET receive completion for id %u that is not posted", e.id);
			}
			continue;
		}
		N.rx_busy[e.id] = false;
		N.rx_frames++;
		if (e.len < NET_HDR_LEN || e.len > RX_BUF_LEN) {
			N.dropped++;	/* the device claims a length we did not give it */
		} else if (N.have_ip) {
			switch (np_handle(&N.nif, mem.rx[e.id] + NET_HDR_LEN, e.len - NET_HDR_LEN,
					  reply, &out_len)) {
			case NP_ARP: N.arp += send_frame(reply, out_len); break;
			case NP_ICMP: N.icmp += send_frame(reply, out_len); break;
			case NP_UDP: N.udp += send_frame(reply, out_len); break;
			case NP_DROPPED: N.dropped++; break;
			case NP_IGNORED: break;
			}
		}
		post_rx((uint16_t)e.id);
	}
}

static void ctl_complete(void)
{
	for (uint16_t n = vq_used_ready(&N.ctl); n; n--) {
		vq_used_take(&N.ctl);
		if (!N.ctl_busy)
			continue;
		N.ctl_busy = false;
		if (READ_ONCE(mem.ctl_ack) == CTRL_OK)
			N.announces++;
		else if (!N.warned_ctl) {
			N.warned_ctl = true;
			con_line("WARN NET announce acknowledgement refused (ack=%u)", mem.ctl_ack);
		}
	}
}

static void check_announce(uint64_t now)
{
	if (N.ctl_busy || now < N.next_status_us)
		return;
	N.next_status_us = now + STATUS_POLL_US;
	if (!(virtio_cfg16(&N.dev, CFG_STATUS) & NET_S_ANNOUNCE))
		return;
	send_garp();
	mem.ctl_cmd[0] = CTRL_ANNOUNCE;
	mem.ctl_cmd[1] = CTRL_ANNOUNCE_ACK;
	mem.ctl_ack = 0xff;
	vq_set_desc(&N.ctl, 0, mem.ctl_cmd, sizeof(mem.ctl_cmd), VQ_DESC_F_NEXT, 1);
	vq_set_desc(&N.ctl, 1, &mem.ctl_ack, 1, VQ_DESC_F_WRITE, 0);
	vq_submit(&N.ctl, 0);
	N.ctl_busy = true;
}

void vnet_poll(uint64_t now)
{
	if (!N.up)
		return;
	reclaim_tx();
	receive();
	if (N.announce) {
		ctl_complete();
		check_announce(now);
	}
	vq_kick(&N.rx);
	vq_kick(&N.tx);
	vq_kick(&N.ctl);
}

static void read_mac(void)
{
	uint8_t gen;

	do {	/* the device may change its configuration while we read it */
		gen = virtio_cfg_gen(&N.dev);
		for (unsigned i = 0; i < ETH_ALEN; i++)
			N.nif.mac[i] = virtio_cfg8(&N.dev, CFG_MAC + i);
	} while (gen != virtio_cfg_gen(&N.dev));
}

bool vnet_init(const struct pci_fn *f, const uint8_t ip[4], bool have_ip, char *why,
	       size_t n)
{
	static const uint8_t default_mac[ETH_ALEN] = { 0x02, 0x4b, 0x56, 0x4d, 0x00, 0x01 };
	const uint64_t wanted = NET_F_MAC | NET_F_STATUS | NET_F_CTRL_VQ | NET_F_GUEST_ANNOUNCE;

	memset(&N, 0, sizeof(N));
	if (!virtio_probe(f, &N.dev, why, n) || !virtio_negotiate(&N.dev, wanted, why, n))
		return false;
	if (!virtio_vq_setup(&N.dev, &N.rx, 0, mem.rxq, RX_BUFS, why, n) ||
	    !virtio_vq_setup(&N.dev, &N.tx, 1, mem.txq, TX_BUFS, why, n) ||
	    ((N.dev.features & NET_F_CTRL_VQ) &&
	     !virtio_vq_setup(&N.dev, &N.ctl, 2, mem.ctlq, 2, why, n))) {
		virtio_fail(&N.dev);
		return false;
	}
	N.announce = (N.dev.features & (NET_F_STATUS | NET_F_CTRL_VQ | NET_F_GUEST_ANNOUNCE)) ==
		     (NET_F_STATUS | NET_F_CTRL_VQ | NET_F_GUEST_ANNOUNCE) && N.ctl.size >= 2;
	if (N.dev.features & NET_F_MAC)
		read_mac();
	else
		memcpy(N.nif.mac, default_mac, ETH_ALEN);
	memcpy(N.nif.ip, ip, 4);
	N.have_ip = have_ip;
	N.nrx = N.rx.size;
	N.ntx = N.tx.size;
	for (uint16_t i = 0; i < N.nrx; i++)
		post_rx(i);
	for (uint16_t i = N.ntx; i > 0; i--)
		N.free_tx[N.nfree++] = (uint16_t)(i - 1);
	virtio_driver_ok(&N.dev);
	N.up = true;
	send_garp();
	vq_kick(&N.rx);
	vq_kick(&N.tx);
	if (have_ip)
		con_line("NET %02x:%02x:%02x:%02x:%02x:%02x ip=%u.%u.%u.%u", N.nif.mac[0],
			 N.nif.mac[1], N.nif.mac[2], N.nif.mac[3], N.nif.mac[4], N.nif.mac[5],
			 ip[0], ip[1], ip[2], ip[3]);
	else
		con_line("NET %02x:%02x:%02x:%02x:%02x:%02x ip=none", N.nif.mac[0],
			 N.nif.mac[1], N.nif.mac[2], N.nif.mac[3], N.nif.mac[4], N.nif.mac[5]);
	return true;
}

void vnet_print_stats(void)
{
	if (N.up)
		con_line("NET STATS rx=%lu tx=%lu arp=%lu icmp=%lu udp=%lu announce=%lu",
			 N.rx_frames, N.tx_frames, N.arp, N.icmp, N.udp, N.announces);
}
