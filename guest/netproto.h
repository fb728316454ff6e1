/*
 * netproto.h - the guest's tiny IPv4 host, as pure functions on frames:
 * answer ARP requests for our address, ICMP echo requests and UDP echo
 * (port 7); build gratuitous ARPs. Every length and checksum of a
 * received frame is checked before use: a malformed frame is dropped,
 * never trusted. No state, no I/O (see vnet.c for the device side).
 */
#ifndef GUEST_NETPROTO_H
#define GUEST_NETPROTO_H

#include <stddef.h>
#include <stdint.h>

#define ETH_ALEN 6
#define ETH_FRAME_MAX 1514	/* without FCS: 14 header + 1500 payload */
#define ETH_FRAME_MIN 60	/* replies are padded to this */

struct np_iface {
	uint8_t mac[ETH_ALEN];
	uint8_t ip[4];
};

enum np_result {
	NP_IGNORED,	/* well-formed, not for us or nothing to answer */
	NP_DROPPED,	/* malformed: bad length, checksum, header field */
	NP_ARP,		/* out holds an ARP reply */
	NP_ICMP,	/* out holds an ICMP echo reply */
	NP_UDP,		/* out holds a UDP echo reply */
};

/*
 * Handle one received frame (without FCS). When a reply is due, it is
 * written to out (room for ETH_FRAME_MAX bytes) and *out_len is set.
 */
enum np_result np_handle(const struct np_iface *nif, const uint8_t *frame, size_t len,
			 uint8_t *out, size_t *out_len);

/* A gratuitous ARP (request for our own address, target MAC 0); returns its length. */
size_t np_gratuitous_arp(const struct np_iface *nif, uint8_t *out);

#endif
