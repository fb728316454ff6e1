/*
 * metrics.c - GET /metrics: the cluster in Prometheus' text format 0.0.4
 * (docs/API.md, "Metrics"), from the same reads as the API.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "console/console_int.h"

/* Histogram buckets, seconds. */
static const double downtime_le[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5 };
static const double total_le[] = { 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600 };

struct hist {
	const double *le;
	size_t n;
	unsigned long long count[16], total;
	double sum;
};

static void hist_add(struct hist *h, double v)
{
	for (size_t i = 0; i < h->n; i++)
		if (v <= h->le[i])
			h->count[i]++;
	h->total++;
	h->sum += v;
}

/* A label value: \, " and newline escaped. */
static void label(FILE *f, const char *s)
{
	for (; s && *s; s++) {
		if (*s == '\\' || *s == '"')
			fputc('\\', f);
		if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
}

static void hist_print(FILE *f, const char *name, const char *kind, const struct hist *h)
{
	for (size_t i = 0; i < h->n; i++)
		fprintf(f, "%s_bucket{kind=\"%s\",le=\"%g\"} %llu\n", name, kind, h->le[i],
			h->count[i]);
	fprintf(f, "%s_bucket{kind=\"%s\",le=\"+Inf\"} %llu\n", name, kind, h->total);
	fprintf(f, "%s_sum{kind=\"%s\"} %g\n%s_count{kind=\"%s\"} %llu\n", name, kind, h->sum,
		name, kind, h->total);
}

static void nodes(FILE *f, json_t *nl, json_t *drains)
{
	static const char *const states[] = { "up", "down", "maintenance", "draining", "drained",
					      "bad record" };
	unsigned long long count[6] = { 0 };
	size_t i;
	json_t *n;

	fputs("# HELP kvmove_node_cpu_load The node's 1-minute load average.\n"
	      "# TYPE kvmove_node_cpu_load gauge\n", f);
	json_array_foreach(nl, i, n) {
		const char *name = json_string_value(json_object_get(n, "name")) ?: "?";
		const char *st = json_string_value(json_object_get(n, "state")) ?: "?";
		json_t *rec = json_object_get(n, "record");
		json_t *dr = json_object_get(drains, name);
		const char *ds = json_string_value(json_object_get(dr, "state")) ?: "";
		for (size_t k = 0; k < 6; k++)
			count[k] += !strcmp(st, states[k]) ||
				    (!strcmp(st, "maintenance") && !strcmp(ds, states[k]));
		if (!rec)
			continue;
		fputs("kvmove_node_cpu_load{node=\"", f);
		label(f, name);
		fprintf(f, "\"} %g\n", json_number_value(json_array_get(json_object_get(rec, "load"),
									   0)));
	}
	fputs("# HELP kvmove_node_ram_used_bytes RAM of the VMs placed on the node.\n"
	      "# TYPE kvmove_node_ram_used_bytes gauge\n"
	      "# HELP kvmove_node_ram_bytes RAM the node offers VMs.\n"
	      "# TYPE kvmove_node_ram_bytes gauge\n"
	      "# HELP kvmove_node_vms VMs on the node.\n# TYPE kvmove_node_vms gauge\n"
	      "# HELP kvmove_node_draining 1 while the node drains.\n"
	      "# TYPE kvmove_node_draining gauge\n", f);
	json_array_foreach(nl, i, n) {
		const char *name = json_string_value(json_object_get(n, "name")) ?: "?";
		json_t *rec = json_object_get(n, "record");
		const char *ds = json_string_value(json_object_get(json_object_get(drains, name),
								   "state")) ?: "";
		if (rec) {
			fputs("kvmove_node_ram_used_bytes{node=\"", f);
			label(f, name);
			fprintf(f, "\"} %lld\nkvmove_node_ram_bytes{node=\"",
				(long long)json_integer_value(json_object_get(rec, "ram-used")));
			label(f, name);
			fprintf(f, "\"} %lld\nkvmove_node_vms{node=\"",
				(long long)json_integer_value(json_object_get(rec, "ram-total")));
			label(f, name);
			fprintf(f, "\"} %zu\n", json_array_size(json_object_get(rec, "vms")));
		}
		fputs("kvmove_node_draining{node=\"", f);
		label(f, name);
		fprintf(f, "\"} %d\n", !strcmp(ds, "draining"));
	}
	fputs("# HELP kvmove_nodes Nodes by state.\n# TYPE kvmove_nodes gauge\n", f);
	for (size_t k = 0; k < 6; k++)
		fprintf(f, "kvmove_nodes{state=\"%s\"} %llu\n", states[k], count[k]);
}

static void vms(FILE *f, json_t *vl)
{
	const char *names[16];
	unsigned long long count[16];
	size_t nn = 0, i;
	json_t *v;

	json_array_foreach(vl, i, v) {
		const char *st = json_string_value(json_object_get(json_object_get(v, "status"),
								   "state")) ?: "defined";
		size_t k;
		for (k = 0; k < nn && strcmp(names[k], st); k++)
			;
		if (k == nn && nn < 16) {
			names[nn] = st;
			count[nn++] = 0;
		}
		if (k < nn)
			count[k]++;
	}
	fputs("# HELP kvmove_vms VMs by state.\n# TYPE kvmove_vms gauge\n", f);
	for (size_t k = 0; k < nn; k++) {
		fputs("kvmove_vms{state=\"", f);
		label(f, names[k]);
		fprintf(f, "\"} %llu\n", count[k]);
	}
}

static void migrations(FILE *f, json_t *ml)
{
	struct hist dl = { .le = downtime_le, .n = 10 }, dq = { .le = downtime_le, .n = 10 };
	struct hist tl = { .le = total_le, .n = 11 }, tq = { .le = total_le, .n = 11 };
	unsigned long long done = 0, failed = 0, cancelled = 0;
	double bytes = 0;
	size_t i;
	json_t *m;

	json_array_foreach(json_object_get(ml, "finished"), i, m) {
		const char *st = json_string_value(json_object_get(m, "state")) ?: "";
		json_t *s = json_object_get(m, "stats");
		bool quick = json_is_true(json_object_get(m, "quick"));
		if (!strcmp(st, "completed")) {
			done++;
			if (s) {
				hist_add(quick ? &dq : &dl, json_number_value(json_object_get(
					s, "downtime-ms")) / 1000.0);
				hist_add(quick ? &tq : &tl, json_number_value(json_object_get(
					s, "total-time-ms")) / 1000.0);
				bytes += json_number_value(json_object_get(s, "transferred"));
			}
		} else if (!strcmp(st, "cancelled")) {
			cancelled++;
		} else {
			failed++;
		}
	}
	fprintf(f, "# HELP kvmove_migrations Recorded migrations by result.\n"
		"# TYPE kvmove_migrations gauge\n"
		"kvmove_migrations{result=\"completed\"} %llu\n"
		"kvmove_migrations{result=\"failed\"} %llu\n"
		"kvmove_migrations{result=\"cancelled\"} %llu\n"
		"kvmove_migrations{result=\"queued\"} %zu\n"
		"kvmove_migrations{result=\"running\"} %zu\n", done, failed, cancelled,
		json_array_size(json_object_get(ml, "queued")),
		json_array_size(json_object_get(ml, "running")));
	fputs("# HELP kvmove_migration_downtime_seconds Downtime of completed migrations.\n"
	      "# TYPE kvmove_migration_downtime_seconds histogram\n", f);
	hist_print(f, "kvmove_migration_downtime_seconds", "live", &dl);
	hist_print(f, "kvmove_migration_downtime_seconds", "quick", &dq);
	fputs("# HELP kvmove_migration_total_seconds Total time of completed migrations.\n"
	      "# TYPE kvmove_migration_total_seconds histogram\n", f);
	hist_print(f, "kvmove_migration_total_seconds", "live", &tl);
	hist_print(f, "kvmove_migration_total_seconds", "quick", &tq);
	fprintf(f, "# HELP kvmove_migration_bytes_total Bytes sent by recorded completed "
		"migrations.\n# TYPE kvmove_migration_bytes_total counter\n"
		"kvmove_migration_bytes_total %.0f\n", bytes);
}

void console_metrics(struct console *c, struct console_answer *a)
{
	static const char *const nl_args[] = { "node", "list", NULL };
	static const char *const vl_args[] = { "vm", "list", NULL };
	static const char *const ml_args[] = { "migration", "list", "--all", NULL };
	json_t *nl = NULL, *vl = NULL, *ml = NULL, *dr = NULL;
	char *text = NULL;
	size_t len = 0;
	FILE *f;

	if (!(nl = console_cli_json(c, nl_args, a)) || !(vl = console_cli_json(c, vl_args, a)) ||
	    !(ml = console_cli_json(c, ml_args, a)))
		goto out;
	if (!(f = open_memstream(&text, &len))) {
		answer_error(a, 500, "out of memory");
		goto out;
	}
	dr = console_drains(c);
	nodes(f, nl, dr);
	vms(f, vl);
	migrations(f, ml);
	fclose(f);
	a->status = 200;
	a->type = "text/plain; version=0.0.4; charset=utf-8";
	a->body = text;
out:
	json_decref(nl);
	json_decref(vl);
	json_decref(ml);
	json_decref(dr);
}
