/*
 * tls_throughput.c - what TLS costs the migration stream, on loopback TCP:
 *
 *   plaintext       the stream over an fd channel (what kvmove does today)
 *   tls             the stream over kvmove's TLS channel (PSK, its ciphers)
 *   gnutls CIPHER   bare GnuTLS records, PSK, one cipher (AES-128-GCM,
 *                   CHACHA20-POLY1305): what the stream adds to TLS
 *   aead CIPHER     the cipher alone, in memory, 16 KiB records (one
 *                   core): the ceiling, and why the channel prefers
 *                   AES-GCM (AES-256-GCM needs a SHA-384 suite, which a
 *                   PSK made for SHA-256 cannot use; x509 sessions can)
 *
 * A sender thread writes MIB MiB in 1 MiB records, a receiver thread reads
 * and checks them; the time runs from the first write to the last byte
 * read.  Each case runs RUNS times; the best run is printed with the CPU
 * seconds each side spent (user+sys), and kTLS's state.  Not a test: no
 * pass/fail, numbers for docs/TLS.md.
 *
 * Built with the tree (CMake target tls_throughput, -O2 like the VMM).
 * Run: build/bench/tls_throughput [MIB] [RUNS] [CASES]
 *   default 1024 MiB, 3 runs, CASES "plain,tls,gnutls,aead" (any of them)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "state/channel.h"
#include "state/channel_tls.h"
#include "state/stream.h"

#define REC (1u << 20)
#define MAXREC (2u << 20)

enum mode { PLAIN, TLS_CHANNEL, BARE_GNUTLS };

struct job {
	enum mode mode;
	const char *prio;		/* BARE_GNUTLS */
	struct tls_creds *creds;	/* TLS_CHANNEL: this side's */
	int fd;
	uint64_t bytes;
	double cpu;			/* seconds, this thread */
	double t_end;
	char desc[192];
	char err[KV_ERR_MAX + 64];
};

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double thread_cpu(void)
{
	struct rusage ru;

	getrusage(RUSAGE_THREAD, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static const gnutls_datum_t bare_key = { (unsigned char *)"0123456789abcdef0123456789abcdef",
					 32 };

static int bare_psk(gnutls_session_t s, const gnutls_datum_t *id, gnutls_datum_t *key)
{
	key->data = gnutls_malloc(bare_key.size);
	memcpy(key->data, bare_key.data, bare_key.size);
	key->size = bare_key.size;
	return 0;
}

static gnutls_session_t bare_session(struct job *j, bool server, void **cred)
{
	gnutls_session_t s;
	gnutls_datum_t id = { (unsigned char *)"bench", 5 };
	int r;

	gnutls_init(&s, server ? GNUTLS_SERVER : GNUTLS_CLIENT);
	gnutls_priority_set_direct(s, j->prio, NULL);
	if (server) {
		gnutls_psk_server_credentials_t c;
		gnutls_psk_allocate_server_credentials(&c);
		gnutls_psk_set_server_credentials_function2(c, bare_psk);
		gnutls_credentials_set(s, GNUTLS_CRD_PSK, c);
		*cred = c;
	} else {
		gnutls_psk_client_credentials_t c;
		gnutls_psk_allocate_client_credentials(&c);
		gnutls_psk_set_client_credentials2(c, &id, &bare_key, GNUTLS_PSK_KEY_RAW);
		gnutls_credentials_set(s, GNUTLS_CRD_PSK, c);
		*cred = c;
	}
	gnutls_transport_set_int(s, j->fd);
	do
		r = gnutls_handshake(s);
	while (r < 0 && !gnutls_error_is_fatal(r));
	if (r < 0) {
		snprintf(j->err, sizeof(j->err), "handshake: %s", gnutls_strerror(r));
		gnutls_deinit(s);
		return NULL;
	}
	snprintf(j->desc, sizeof(j->desc), "%s",
		 gnutls_cipher_get_name(gnutls_cipher_get(s)));
	return s;
}

static void bare_free(gnutls_session_t s, bool server, void *cred)
{
	gnutls_deinit(s);
	if (server)
		gnutls_psk_free_server_credentials(cred);
	else
		gnutls_psk_free_client_credentials(cred);
}

/* the stream over a channel (plaintext or TLS): send or receive */
static void stream_side(struct job *j, struct channel *ch, bool sender, uint8_t *buf)
{
	struct stream s;
	struct stream_rec rec;
	struct kv_err err;

	if (stream_init_channel(&s, ch, MAXREC, &err)) {
		snprintf(j->err, sizeof(j->err), "%s", err.msg);
		return;
	}
	s.timeout_ms = 30000;
	if (sender) {
		int r = 0;
		for (uint64_t done = 0; !r && done < j->bytes; done += REC)
			r = stream_write(&s, 4, 0, buf, REC, &err);
		if (!r)
			r = stream_flush(&s, &err);
		snprintf(j->err, sizeof(j->err), "%s", r ? err.msg : "");
	} else {
		uint64_t got = 0;
		int r;
		while (!(r = stream_read(&s, &rec, &err)))
			got += rec.len;
		if (r == -ECONNRESET && got == j->bytes)
			j->err[0] = '\0';
		else
			snprintf(j->err, sizeof(j->err), "%s (%llu bytes)", err.msg,
				 (unsigned long long)got);
	}
	stream_destroy(&s);
}

static void *side(struct job *j, bool sender)
{
	uint8_t *buf = malloc(REC);
	double c0 = thread_cpu();
	struct channel *ch = NULL;
	struct kv_err err;

	for (size_t i = 0; i < REC; i++)
		buf[i] = (uint8_t)(i * 2654435761u >> 13);
	j->err[0] = '\0';
	if (j->mode == PLAIN) {
		if (!channel_fd_new(&ch, j->fd, &err))
			stream_side(j, ch, sender, buf);
		snprintf(j->desc, sizeof(j->desc), "plaintext");
	} else if (j->mode == TLS_CHANNEL) {
		int r = sender ? channel_tls_client(&ch, j->fd, j->creds, NULL, 10000, &err)
			       : channel_tls_server(&ch, j->fd, j->creds, 10000, &err);
		if (r) {
			snprintf(j->err, sizeof(j->err), "%s", err.msg);
		} else {
			snprintf(j->desc, sizeof(j->desc), "%s", channel_tls_desc(ch));
			stream_side(j, ch, sender, buf);
		}
	} else {
		void *cred;
		gnutls_session_t s = bare_session(j, !sender, &cred);
		uint64_t done = 0;

		while (s && done < j->bytes) {
			ssize_t n = sender ? gnutls_record_send(s, buf, REC)
					   : gnutls_record_recv(s, buf, REC);
			if (n <= 0 && n != GNUTLS_E_AGAIN && n != GNUTLS_E_INTERRUPTED) {
				snprintf(j->err, sizeof(j->err), "%s", gnutls_strerror((int)n));
				break;
			}
			done += n > 0 ? (uint64_t)n : 0;
		}
		if (s)
			bare_free(s, !sender, cred);
	}
	/* the sender's end of stream; a receiver that stops early must not
	 * leave the sender blocked on a full socket */
	shutdown(j->fd, sender ? SHUT_WR : SHUT_RDWR);
	channel_close(ch);
	j->t_end = now();
	j->cpu = thread_cpu() - c0;
	free(buf);
	return NULL;
}

static void *receiver_main(void *arg)
{
	return side(arg, false);
}

/* One transfer over a fresh loopback connection: MiB/s, or -1. */
static double transfer(struct job *snd, struct job *rcv)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
	pthread_t t;
	double t0;

	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 1) ||
	    getsockname(l, (struct sockaddr *)&a, &alen))
		return -1;
	snd->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (connect(snd->fd, (struct sockaddr *)&a, sizeof(a)))
		return -1;
	rcv->fd = accept(l, NULL, NULL);
	close(l);
	setsockopt(snd->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	t0 = now();
	pthread_create(&t, NULL, receiver_main, rcv);
	side(snd, true);
	pthread_join(t, NULL);
	close(snd->fd);
	close(rcv->fd);
	if (snd->err[0] || rcv->err[0]) {
		fprintf(stderr, "  failed: sender: %s; receiver: %s\n", snd->err, rcv->err);
		return -1;
	}
	return (double)rcv->bytes / (1 << 20) / (rcv->t_end - t0);
}

static double bench(const char *label, enum mode m, const char *prio, struct tls_creds *cc,
		    struct tls_creds *sc, uint64_t bytes, int runs)
{
	double best = -1, cpu_s = 0, cpu_r = 0;
	char desc[192] = "";

	for (int i = 0; i < runs; i++) {
		struct job snd = { .mode = m, .prio = prio, .creds = cc, .bytes = bytes };
		struct job rcv = { .mode = m, .prio = prio, .creds = sc, .bytes = bytes };
		double mibs = transfer(&snd, &rcv);

		if (mibs > best) {
			best = mibs;
			cpu_s = snd.cpu;
			cpu_r = rcv.cpu;
			snprintf(desc, sizeof(desc), "%s", rcv.desc);
		}
	}
	printf("%-26s %7.0f MiB/s   cpu s: send %.2f recv %.2f   (%s)\n", label, best, cpu_s,
	       cpu_r, desc);
	fflush(stdout);
	return best;
}

/* The cipher alone: seal MIB MiB as 16 KiB records in memory. */
static void aead(const char *name, gnutls_cipher_algorithm_t alg, uint64_t bytes)
{
	static uint8_t key[32], nonce[12], in[16384], out[16384 + 16];
	gnutls_datum_t k = { key, (unsigned)gnutls_cipher_get_key_size(alg) };
	gnutls_aead_cipher_hd_t h;
	double t0, c0;

	if (gnutls_aead_cipher_init(&h, alg, &k) < 0) {
		printf("aead %-21s unavailable\n", name);
		return;
	}
	t0 = now();
	c0 = thread_cpu();
	for (uint64_t done = 0; done < bytes; done += sizeof(in)) {
		size_t olen = sizeof(out);
		nonce[0]++;
		gnutls_aead_cipher_encrypt(h, nonce, sizeof(nonce), NULL, 0, 16, in, sizeof(in), out,
					   &olen);
	}
	printf("aead %-21s %7.0f MiB/s   (one core, cpu s %.2f)\n", name,
	       (double)bytes / (1 << 20) / (now() - t0), thread_cpu() - c0);
	gnutls_aead_cipher_deinit(h);
}

int main(int argc, char **argv)
{
	uint64_t mib = argc > 1 ? strtoull(argv[1], NULL, 10) : 1024;
	int runs = argc > 2 ? atoi(argv[2]) : 3;
	const char *cases = argc > 3 ? argv[3] : "plain,tls,gnutls,aead";
	double plain = 0, tls = 0;
	char dir[] = "/tmp/kvmove-tlsbench-XXXXXX", keys[64];
	struct tls_creds *cc = NULL, *sc = NULL;
	struct kv_err err;
	static const char *ciphers[] = { "AES-128-GCM", "CHACHA20-POLY1305" };

	if (!mib || runs < 1 || !mkdtemp(dir))
		return 2;
	snprintf(keys, sizeof(keys), "%s/k.psk", dir);
	if (tls_psk_keygen(keys, "bench", false, &err) ||
	    tls_creds_load(&cc, TLS_PSK, keys, false, &err) ||
	    tls_creds_load(&sc, TLS_PSK, keys, true, &err)) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	printf("%llu MiB per run, best of %d, 1 MiB records, loopback TCP\n",
	       (unsigned long long)mib, runs);
	if (strstr(cases, "plain"))
		plain = bench("stream, plaintext", PLAIN, NULL, NULL, NULL, mib << 20, runs);
	if (strstr(cases, "tls"))
		tls = bench("stream, TLS channel", TLS_CHANNEL, NULL, cc, sc, mib << 20, runs);
	for (size_t i = 0; strstr(cases, "gnutls") && i < sizeof(ciphers) / sizeof(ciphers[0]);
	     i++) {
		char prio[256], label[64];
		snprintf(prio, sizeof(prio), "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+%s:"
			 "-KX-ALL:+ECDHE-PSK", ciphers[i]);
		snprintf(label, sizeof(label), "bare GnuTLS %s", ciphers[i]);
		bench(label, BARE_GNUTLS, prio, NULL, NULL, mib << 20, runs);
	}
	if (strstr(cases, "aead")) {
		aead("AES-128-GCM", GNUTLS_CIPHER_AES_128_GCM, mib << 20);
		aead("AES-256-GCM", GNUTLS_CIPHER_AES_256_GCM, mib << 20);
		aead("CHACHA20-POLY1305", GNUTLS_CIPHER_CHACHA20_POLY1305, mib << 20);
	}
	if (plain > 0 && tls > 0)
		printf("TLS channel / plaintext: %.0f%%\n", 100 * tls / plain);
	tls_creds_free(cc);
	tls_creds_free(sc);
	unlink(keys);
	rmdir(dir);
	return 0;
}
