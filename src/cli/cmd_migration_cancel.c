/*
 * cmd_migration_cancel.c - kvmove migration cancel ID: a queued migration
 * is cancelled at once (compare-and-swap on its record); a running one is
 * asked to stop through /kvmove/migration-cancel/ID, which its source
 * agent sees and turns into the VMM's migrate_cancel.  A migration past its
 * switchover (GO sent) cannot be cancelled any more and completes.
 */
#define _GNU_SOURCE
#include "cli/cli.h"
#include "cli/clustercli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WAIT_S 30

static void usage(FILE *f)
{
	fputs("usage: kvmove migration cancel ID\n"
	      "\n"
	      "Cancel a cluster migration (its ID: kvmove migration list).  A queued one\n"
	      "is dropped at once; a running one is stopped by its source node's agent,\n"
	      "the VM staying where it runs, and this waits (up to 30 s) to say how it\n"
	      "ended: a migration already past its switchover completes anyway.\n"
	      "\n"
	      CCLI_HELP_COMMON
	      "\n"
	      "exit status: 0 cancelled, 1 it ended otherwise (completed or failed\n"
	      "first), 2 usage error, 3 no such migration or already ended, 5 etcd\n"
	      "unreachable, 6 no answer from the source agent within 30 s (the request\n"
	      "stays: the agent acts on it when it can)\n", f);
}

static int wait_end(struct ccli *c, const char *key, const char *id, int64_t rev)
{
	double deadline = ccli_now() + WAIT_S;

	while (ccli_now() < deadline) {
		struct store_kv kv = { 0 };
		struct kv_err err;
		json_t *rec = NULL;
		const char *st;
		bool changed;
		int rc = store_get(c->st, key, &kv, NULL, &err), status;

		if (rc)
			return ccli_store_fail(c, rc, &err, "the cancel request stays");
		cluster_json_object("migration", kv.value, kv.vlen, &rec, NULL);
		store_kv_free(&kv);
		st = cluster_jstr(rec, "state");
		if (cluster_migration_state_terminal(st)) {
			char why[256];
			cluster_sanitize(why, sizeof(why), cluster_jstr(rec, "reason"));
			status = !strcmp(st, "cancelled") ? KV_EXIT_OK : KV_EXIT_FAIL;
			if (c->json)
				ccli_print_json(rec);
			else if (status == KV_EXIT_OK)
				printf("migration %s cancelled%s%s\n", id, why[0] ? ": " : "", why);
			else
				ccli_msg(c, "migration %s %s before the cancel reached it%s%s", id, st,
					 why[0] ? ": " : "", why);
			json_decref(rec);
			return status;
		}
		json_decref(rec);
		if ((status = ccli_wait(c, key, &rev, 2000, &changed, "the cancel request stays")))
			return status;
	}
	ccli_msg(c, "the source agent has not acted on the cancel of %s within %d s; the "
		 "request stays (kvmove migration list)", id, WAIT_S);
	return KV_EXIT_INDETERMINATE;
}

int cmd_migration_cancel(int argc, char **argv)
{
	struct ccli c = { .verb = "migration cancel" };
	char key[160], ckey[160];
	struct store_kv kv = { 0 };
	struct kv_err err;
	json_t *rec = NULL;
	const char *id, *st;
	int status, rc;
	bool ok;

	if ((status = ccli_parse_common(&c, argc, argv, usage)))
		return status < 0 ? KV_EXIT_OK : status;
	if (optind + 1 != argc) {
		ccli_msg(&c, "give one migration ID (kvmove migration list)");
		return KV_EXIT_USAGE;
	}
	id = argv[optind];
	if (!cluster_migration_id_ok(id)) {
		ccli_msg(&c, "'%s' is not a migration ID", id);
		return KV_EXIT_USAGE;
	}
	if ((status = ccli_open(&c)))
		return status;
	snprintf(key, sizeof(key), "/kvmove/migrations/%s", id);
	snprintf(ckey, sizeof(ckey), "/kvmove/migration-cancel/%s", id);
	for (int tries = 0; tries < 5; tries++) {
		int64_t rev = 0;
		rc = store_get(c.st, key, &kv, &rev, &err);
		if (rc == -ENOENT) {
			ccli_msg(&c, "no migration %s", id);
			status = KV_EXIT_REFUSED;
			goto out;
		}
		if (rc) {
			status = ccli_store_fail(&c, rc, &err, NULL);
			goto out;
		}
		json_decref(rec);
		rec = NULL;
		if (cluster_json_object("migration", kv.value, kv.vlen, &rec, &err)) {
			ccli_msg(&c, "%s", err.msg);
			status = KV_EXIT_FAIL;
			goto out;
		}
		st = cluster_jstr(rec, "state");
		if (cluster_migration_state_terminal(st)) {
			ccli_msg(&c, "migration %s has already ended: %s", id, st);
			status = KV_EXIT_REFUSED;
			goto out;
		}
		if (!strcmp(st, "queued")) {
			rc = cluster_migration_cancel_queued(c.st, &kv, rec, "cancelled on request",
							     ccli_wall(), &ok, &err);
			if (rc) {
				status = ccli_store_fail(&c, rc, &err, NULL);
				goto out;
			}
			if (ok) {
				if (c.json)
					ccli_print_json(rec);
				else
					printf("migration %s cancelled (it was queued)\n", id);
				status = KV_EXIT_OK;
				goto out;
			}
			store_kv_free(&kv);
			continue;	/* it changed meanwhile (started?): read again */
		}
		/* running: ask its source agent */
		{
			json_t *req = json_pack("{s:s, s:f}", "migration", id, "requested", ccli_wall());
			char *text = json_dumps(req, JSON_COMPACT);
			rc = text ? store_put(c.st, ckey, text, 0, NULL, &err) : -ENOMEM;
			free(text);
			json_decref(req);
		}
		if (rc) {
			status = ccli_store_fail(&c, rc, &err, NULL);
			goto out;
		}
		status = wait_end(&c, key, id, rev);
		goto out;
	}
	ccli_msg(&c, "migration %s keeps changing; try again", id);
	status = KV_EXIT_FAIL;
out:
	json_decref(rec);
	store_kv_free(&kv);
	ccli_close(&c);
	return status;
}
