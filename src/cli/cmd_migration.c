/*
 * cmd_migration.c - kvmove migration list: the migration records
 * (/kvmove/migrations/ID): queued ones in queue order (the key's create
 * revision), running ones with their progress, the most recent finished.
 */
#define _GNU_SOURCE
#include "cli/cli.h"
#include "cli/clustercli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RECENT_FINISHED 20
#define MIB (1024.0 * 1024.0)

static void usage_migration(FILE *f)
{
	fputs("usage: kvmove migration list [--all]\n"
	      "       kvmove migration cancel ID   (see kvmove migration cancel --help)\n"
	      "\n"
	      "The cluster's migrations: queued (in queue order), running (with their\n"
	      "progress), and the 20 most recently finished (--all: every finished one).\n"
	      "--json: {\"queued\": [...], \"running\": [...], \"finished\": [...]} with the\n"
	      "records as stored (docs/CLUSTER.md).\n"
	      "\n"
	      "  -a, --all                every finished migration\n"
	      CCLI_HELP_COMMON
	      "\n"
	      "exit status: 0 listed, 1 failed, 2 usage error, 5 etcd unreachable\n", f);
}

struct rec {
	json_t *j;
	int64_t create_rev;
	double finished;
	const char *key;
};

static int by_queue(const void *a, const void *b)
{
	const struct rec *x = a, *y = b;

	return (x->create_rev > y->create_rev) - (x->create_rev < y->create_rev);
}

/* Finished: by end time, then ID (sortable by the request time). */
static int by_end(const void *a, const void *b)
{
	const struct rec *x = a, *y = b;

	if (x->finished != y->finished)
		return x->finished < y->finished ? -1 : 1;
	return strcmp(x->key, y->key);
}

/* PROGRESS / RESULT column. */
static void detail(json_t *m, char *buf, size_t len)
{
	const char *st = cluster_jstr(m, "state");
	json_t *p = json_object_get(m, "progress"), *s = json_object_get(m, "stats");
	char why[160];

	cluster_sanitize(why, sizeof(why), cluster_jstr(m, "reason"));
	if (!strcmp(st, "running") && json_is_object(p)) {
		double total = cluster_jbytes(p, "total"), sent = cluster_jbytes(p, "transferred");
		double left = cluster_jbytes(p, "remaining"), pct = 0;
		json_int_t round = cluster_jint(p, "round", 1);

		if (total > 0)
			pct = round <= 1 ? sent * 100 / total : 100 - left * 100 / total;
		pct = pct < 0 ? 0 : pct > 99 ? 99 : pct;
		snprintf(buf, len, "%d%%, %.0f MiB sent, round %lld", (int)pct, sent / MIB,
			 (long long)round);
	} else if (!strcmp(st, "completed")) {
		snprintf(buf, len, "%.1f s, downtime %lld ms",
			 cluster_jbytes(s, "total-time-ms") / 1000,
			 (long long)cluster_jint(s, "downtime-ms", 0));
	} else if (!strcmp(st, "queued") && !why[0]) {
		char from[72];

		cluster_sanitize(from, sizeof(from), cluster_jstr(m, "from"));
		snprintf(buf, len, "waiting for a slot on %s", from);
	} else {
		snprintf(buf, len, "%s%s", cluster_jbool(m, "refused", false) ? "refused: " : "",
			 why);
	}
}

static void add_row(struct ccli_table *t, json_t *m, const char *key)
{
	char id[40], vm[40], from[72], to[72], st[24], det[256], when[32];

	cluster_sanitize(id, sizeof(id), key + strlen("/kvmove/migrations/"));
	cluster_sanitize(vm, sizeof(vm), cluster_jstr(m, "vm"));
	cluster_sanitize(from, sizeof(from), cluster_jstr(m, "from"));
	cluster_sanitize(to, sizeof(to), *cluster_jstr(m, "to") ? cluster_jstr(m, "to") :
			 cluster_jstr(m, "requested-to"));
	cluster_sanitize(st, sizeof(st), cluster_jstr(m, "state"));
	detail(m, det, sizeof(det));
	ccli_fmt_time(when, sizeof(when), cluster_jnum(m, "requested", 0));
	ccli_table_add(t, id, vm, from, to, st, when, det);
}

int cmd_migration(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "all", no_argument, NULL, 'a' },
		CCLI_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	struct ccli c = { .verb = "migration list" };
	struct store_list l = { 0 };
	struct rec *q = NULL, *r = NULL, *f = NULL;
	size_t nq = 0, nr = 0, nf = 0, first;
	struct kv_err err;
	bool all = false;
	int ch, status = KV_EXIT_OK, rc;

	if (argc >= 2 && !strcmp(argv[1], "cancel"))
		return cmd_migration_cancel(argc - 1, argv + 1);
	if (argc < 2 || (strcmp(argv[1], "list") && strcmp(argv[1], "-h") &&
			 strcmp(argv[1], "--help") && strcmp(argv[1], "help"))) {
		if (argc >= 2)
			fprintf(stderr, "kvmove migration: unknown subverb '%s'\n\n", argv[1]);
		usage_migration(stderr);
		return KV_EXIT_USAGE;
	}
	if (strcmp(argv[1], "list")) {
		usage_migration(stdout);
		return KV_EXIT_OK;
	}
	argc--;
	argv++;
	optind = 0;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":ae:jh", longopts, NULL)) != -1) {
		if (ccli_common_opt(&c, ch, optarg))
			continue;
		if (ch == 'a') {
			all = true;
		} else if (ch == 'h') {
			usage_migration(stdout);
			return KV_EXIT_OK;
		} else {
			return ccli_bad_opt(&c, ch, argv);
		}
	}
	if (optind < argc) {
		ccli_msg(&c, "unexpected argument '%s'", argv[optind]);
		return KV_EXIT_USAGE;
	}
	if ((status = ccli_open(&c)))
		return status;
	rc = store_list(c.st, "/kvmove/migrations/", &l, &err);
	if (rc) {
		status = ccli_store_fail(&c, rc, &err, NULL);
		goto out;
	}
	q = calloc(l.n + 1, sizeof(*q));
	r = calloc(l.n + 1, sizeof(*r));
	f = calloc(l.n + 1, sizeof(*f));
	if (!q || !r || !f) {
		ccli_msg(&c, "out of memory");
		status = KV_EXIT_FAIL;
		goto out;
	}
	for (size_t i = 0; i < l.n; i++) {
		struct rec x = { .create_rev = l.kvs[i].create_rev, .key = l.kvs[i].key };
		const char *st;

		if (cluster_json_object("migration", l.kvs[i].value, l.kvs[i].vlen, &x.j, NULL))
			continue;	/* not a record: not ours to show */
		st = cluster_jstr(x.j, "state");
		x.finished = cluster_jnum(x.j, "finished", 0);
		if (x.finished <= 0)	/* ended without a time: when it was asked */
			x.finished = cluster_jnum(x.j, "requested", 0);
		if (!strcmp(st, "queued"))
			q[nq++] = x;
		else if (!strcmp(st, "running"))
			r[nr++] = x;
		else
			f[nf++] = x;	/* ended, or a state we do not know */
	}
	qsort(q, nq, sizeof(*q), by_queue);
	qsort(f, nf, sizeof(*f), by_end);
	first = !all && nf > RECENT_FINISHED ? nf - RECENT_FINISHED : 0;
	if (c.json) {
		json_t *j = json_pack("{s:[], s:[], s:[]}", "queued", "running", "finished");

		for (size_t i = 0; i < nq; i++)
			json_array_append(json_object_get(j, "queued"), q[i].j);
		for (size_t i = 0; i < nr; i++)
			json_array_append(json_object_get(j, "running"), r[i].j);
		for (size_t i = first; i < nf; i++)
			json_array_append(json_object_get(j, "finished"), f[i].j);
		ccli_print_json(j);
		json_decref(j);
	} else if (!nq && !nr && !nf) {
		printf("no migrations\n");
	} else {
		struct ccli_table t;

		ccli_table_init(&t, 7, "ID", "VM", "FROM", "TO", "STATE", "REQUESTED",
				"PROGRESS/RESULT");
		for (size_t i = 0; i < nq; i++)
			add_row(&t, q[i].j, q[i].key);
		for (size_t i = 0; i < nr; i++)
			add_row(&t, r[i].j, r[i].key);
		for (size_t i = first; i < nf; i++)
			add_row(&t, f[i].j, f[i].key);
		ccli_table_print(&t);
		if (first)
			printf("(%zu older finished migrations: --all)\n", first);
	}
out:
	for (size_t i = 0; q && i < nq; i++)
		json_decref(q[i].j);
	for (size_t i = 0; r && i < nr; i++)
		json_decref(r[i].j);
	for (size_t i = 0; f && i < nf; i++)
		json_decref(f[i].j);
	free(q);
	free(r);
	free(f);
	store_list_free(&l);
	ccli_close(&c);
	return status;
}
