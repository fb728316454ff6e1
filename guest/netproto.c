/*
 * netproto.c - see netproto.h. Multi-byte fields are big-endian on the
 * wire and read/written bytewise here; nothing is read beyond `len`.
 */
#include "netproto.h"

#include <stdbool.h>

#include "lib.h"

#define ETH_HLEN 14
#define ETHERTYPE_IPV4 0x0800
#define ETHERTYPE_ARP 0x0806
#define ARP_LEN 28
#define ARP_REQUEST 1
#define ARP_REPLY 2
#define IP_HLEN 20
#define IPPROTO_ICMP 1
#define IPPROTO_UDP 17
#define ICMP_ECHO_REPLY 0
#define ICMP_ECHO_REQUEST 8
#define UDP_HLEN 8
#define UDP_ECHO_PORT 7
#define TTL 64

static const uint8_t broadcast[ETH_ALEN] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* Internet checksum: ones' complement sum of 16-bit words, from `sum`. */
static uint32_t csum_add(uint32_t sum, const uint8_t *p, size_t n)
{
	for (; n > 1; n -= 2, p += 2)
		sum += get16(p);
	if (n)
		sum += (uint32_t)p[0] << 8;
	return sum;
}

static uint16_t csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static bool is_multicast(const uint8_t *mac)
{
	return mac[0] & 1;	/* includes broadcast */
}

static size_t eth_header(uint8_t *out, const uint8_t *dst, const uint8_t *src, uint16_t type)
{
	memcpy(out, dst, ETH_ALEN);
	memcpy(out + ETH_ALEN, src, ETH_ALEN);
	put16(out + 12, type);
	return ETH_HLEN;
}

static size_t pad(uint8_t *out, size_t len)
{
	if (len < ETH_FRAME_MIN) {
		memset(out + len, 0, ETH_FRAME_MIN - len);
		len = ETH_FRAME_MIN;
	}
	return len;
}

static size_t arp_frame(const struct np_iface *nif, uint8_t *out, const uint8_t *eth_dst,
			uint16_t op, const uint8_t *tha, const uint8_t *tpa)
{
	uint8_t *a = out + eth_header(out, eth_dst, nif->mac, ETHERTYPE_ARP);

	put16(a, 1);			/* hardware: Ethernet */
	put16(a + 2, ETHERTYPE_IPV4);
	a[4] = ETH_ALEN;
	a[5] = 4;
	put16(a + 6, op);
	memcpy(a + 8, nif->mac, ETH_ALEN);	/* sender */
	memcpy(a + 14, nif->ip, 4);
	memcpy(a + 18, tha, ETH_ALEN);		/* target */
	memcpy(a + 24, tpa, 4);
	return pad(out, ETH_HLEN + ARP_LEN);
}

size_t np_gratuitous_arp(const struct np_iface *nif, uint8_t *out)
{
	static const uint8_t zero[ETH_ALEN];

	return arp_frame(nif, out, broadcast, ARP_REQUEST, zero, nif->ip);
}

static enum np_result handle_arp(const struct np_iface *nif, const uint8_t *a, size_t len,
				 uint8_t *out, size_t *out_len)
{
	if (len < ARP_LEN || get16(a) != 1 || get16(a + 2) != ETHERTYPE_IPV4 ||
	    a[4] != ETH_ALEN || a[5] != 4)
		return NP_DROPPED;
	if (get16(a + 6) != ARP_REQUEST || memcmp(a + 24, nif->ip, 4) != 0)
		return NP_IGNORED;
	if (is_multicast(a + 8))
		return NP_DROPPED;	/* a sender hardware address must be unicast */
	*out_len = arp_frame(nif, out, a + 8, ARP_REPLY, a + 8, a + 14);
	return NP_ARP;
}

/* IPv4 header of a reply: 20 bytes, no options. */
static void ip_header(uint8_t *ip, const struct np_iface *nif, const uint8_t *dst,
		      uint8_t proto, size_t payload, uint16_t id)
{
	put16(ip, 0x4500);		/* version 4, IHL 5, TOS 0 */
	put16(ip + 2, (uint16_t)(IP_HLEN + payload));
	put16(ip + 4, id);
	put16(ip + 6, 0);		/* no fragmentation */
	ip[8] = TTL;
	ip[9] = proto;
	put16(ip + 10, 0);
	memcpy(ip + 12, nif->ip, 4);
	memcpy(ip + 16, dst, 4);
	put16(ip + 10, csum_fold(csum_add(0, ip, IP_HLEN)));
}

static uint32_t pseudo_header(const uint8_t *src, const uint8_t *dst, uint8_t proto,
			      size_t len)
{
	uint32_t sum = csum_add(csum_add(0, src, 4), dst, 4);
	return sum + proto + (uint32_t)len;
}

static enum np_result handle_icmp(const struct np_iface *nif, const uint8_t *eth_src,
				  const uint8_t *ip, const uint8_t *icmp, size_t len,
				  uint8_t *out, size_t *out_len)
{
	uint8_t *rip = out + ETH_HLEN, *r = rip + IP_HLEN;

	if (len < 8 || csum_fold(csum_add(0, icmp, len)) != 0)
		return NP_DROPPED;
	if (icmp[0] != ICMP_ECHO_REQUEST)
		return NP_IGNORED;
	if (icmp[1] != 0)
		return NP_DROPPED;
	eth_header(out, eth_src, nif->mac, ETHERTYPE_IPV4);
	ip_header(rip, nif, ip + 12, IPPROTO_ICMP, len, get16(ip + 4));
	memcpy(r, icmp, len);		/* same id, sequence and payload */
	r[0] = ICMP_ECHO_REPLY;
	put16(r + 2, 0);
	put16(r + 2, csum_fold(csum_add(0, r, len)));
	*out_len = pad(out, ETH_HLEN + IP_HLEN + len);
	return NP_ICMP;
}

static enum np_result handle_udp(const struct np_iface *nif, const uint8_t *eth_src,
				 const uint8_t *ip, const uint8_t *udp, size_t len,
				 uint8_t *out, size_t *out_len)
{
	uint8_t *rip = out + ETH_HLEN, *r = rip + IP_HLEN;
	size_t ulen;
	uint16_t sum;

	if (len < UDP_HLEN)
		return NP_DROPPED;
	ulen = get16(udp + 4);
	if (ulen < UDP_HLEN || ulen > len)
		return NP_DROPPED;
	if (get16(udp + 6) != 0 &&	/* 0: the sender did not compute one */
	    csum_fold(csum_add(pseudo_header(ip + 12, ip + 16, IPPROTO_UDP, ulen), udp, ulen)))
		return NP_DROPPED;
	if (get16(udp + 2) != UDP_ECHO_PORT)
		return NP_IGNORED;
	if (get16(udp) == 0)
		return NP_DROPPED;	/* nowhere to answer */
	eth_header(out, eth_src, nif->mac, ETHERTYPE_IPV4);
	ip_header(rip, nif, ip + 12, IPPROTO_UDP, ulen, get16(ip + 4));
	put16(r, UDP_ECHO_PORT);
	put16(r + 2, get16(udp));
	put16(r + 4, (uint16_t)ulen);
	put16(r + 6, 0);
	memcpy(r + UDP_HLEN, udp + UDP_HLEN, ulen - UDP_HLEN);
	sum = csum_fold(csum_add(pseudo_header(nif->ip, ip + 12, IPPROTO_UDP, ulen), r, ulen));
	put16(r + 6, sum ? sum : 0xffff);	/* 0 would mean "none" */
	*out_len = pad(out, ETH_HLEN + IP_HLEN + ulen);
	return NP_UDP;
}

static enum np_result handle_ipv4(const struct np_iface *nif, const uint8_t *eth_src,
				  const uint8_t *ip, size_t len, uint8_t *out, size_t *out_len)
{
	size_t ihl, tot;

	if (len < IP_HLEN || ip[0] >> 4 != 4)
		return NP_DROPPED;
	ihl = (size_t)(ip[0] & 0xf) * 4;
	tot = get16(ip + 2);
	if (ihl < IP_HLEN || tot < ihl || tot > len || csum_fold(csum_add(0, ip, ihl)) != 0)
		return NP_DROPPED;
	if (memcmp(ip + 16, nif->ip, 4) != 0)
		return NP_IGNORED;	/* not ours (broadcast included) */
	if (get16(ip + 6) & 0x3fff)
		return NP_IGNORED;	/* a fragment: we do not reassemble */
	if (is_multicast(eth_src))
		return NP_DROPPED;
	/* the payload ends at the IP total length; the rest is Ethernet padding */
	if (ip[9] == IPPROTO_ICMP)
		return handle_icmp(nif, eth_src, ip, ip + ihl, tot - ihl, out, out_len);
	if (ip[9] == IPPROTO_UDP)
		return handle_udp(nif, eth_src, ip, ip + ihl, tot - ihl, out, out_len);
	return NP_IGNORED;
}

enum np_result np_handle(const struct np_iface *nif, const uint8_t *frame, size_t len,
			 uint8_t *out, size_t *out_len)
{
	const uint8_t *dst = frame, *src = frame + ETH_ALEN;

	*out_len = 0;
	if (len < ETH_HLEN || len > ETH_FRAME_MAX)
		return NP_DROPPED;
	if (memcmp(dst, nif->mac, ETH_ALEN) != 0 && memcmp(dst, broadcast, ETH_ALEN) != 0)
		return NP_IGNORED;
	switch (get16(frame + 12)) {
	case ETHERTYPE_ARP:
		return handle_arp(nif, frame + ETH_HLEN, len - ETH_HLEN, out, out_len);
	case ETHERTYPE_IPV4:
		return handle_ipv4(nif, src, frame + ETH_HLEN, len - ETH_HLEN, out, out_len);
	default:
		return NP_IGNORED;
	}
}
