/*
 * migwatch.h - what 'kvmove migrate' and 'kvmove save' share: start a
 * migration on a VMM's control socket, follow it to the end (events plus
 * query-migrate polls), show progress, turn Ctrl-C into migrate_cancel, and
 * map the outcome to an exit status.
 */
#ifndef KVMOVE_CLI_MIGWATCH_H
#define KVMOVE_CLI_MIGWATCH_H

#include <jansson.h>
#include <stdbool.h>

enum migwatch_kind { MIGWATCH_LIVE, MIGWATCH_SAVE };

struct migwatch_opts {
	enum migwatch_kind kind;
	const char *verb;	/* "migrate" / "save": prefix of messages */
	const char *control;	/* the source VMM's control socket */
	json_t *args;		/* the migrate command's arguments (borrowed) */
	const char *target;	/* for humans: the URI or the file */
	bool via;		/* live verb, but quick migration through a directory */
	bool json;		/* NDJSON on stdout instead of human output */
	bool keep_source;	/* leave a migrated source in postmigrate (no quit) */
	int timeout_ms;		/* bounds each wait for the VMM */
};

/* Run the whole migration; returns the process exit status (cli.h). */
int migwatch_run(const struct migwatch_opts *o);

/* Parse --timeout's SEC into milliseconds; -1 on a bad value. */
int migwatch_parse_timeout(const char *s);
/* --compress MODE into args' "compress"; 0, or -1 after saying why on
 * stderr (verb: "migrate", "save"). */
int migwatch_compress_arg(const char *verb, const char *mode, json_t *args);

#endif
