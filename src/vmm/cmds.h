/*
 * cmds.h - what the files of the VMM's control-socket commands share
 * (commands.c: the VM itself; cmd_migration.c: migrations, QMP's way;
 * cmd_info.c: identity and introspection).  Not for anyone else.
 */
#ifndef KVMOVE_VMM_CMDS_H
#define KVMOVE_VMM_CMDS_H

#include <jansson.h>
#include <stdbool.h>

#include "common/err.h"

struct vmm;
struct vm;

/* QMP rejects arguments it does not know; so do we. */
int check_args(json_t *args, const char *const *allowed, struct kv_err *err);
extern const char *const no_args[];
/* Between the pause for stop-and-copy and the end of a migration, only the
 * migration may pause or resume the VM. */
bool migration_busy(struct vmm *vmm);
/* The VM, or NULL (and err) while an incoming VMM has none yet. */
struct vm *need_vm(struct vmm *vmm, struct kv_err *err);

#define CMD(name) int name(void *opaque, json_t *args, json_t **ret, struct kv_err *err)
/* cmd_migration.c */
CMD(qmp_migrate);
CMD(qmp_query_migrate);
CMD(qmp_migrate_cancel);
CMD(qmp_migrate_set_capabilities);
CMD(qmp_query_migrate_capabilities);
CMD(qmp_migrate_set_parameters);
CMD(qmp_query_migrate_parameters);
CMD(qmp_migrate_start_postcopy);
CMD(qmp_migrate_continue);
CMD(qmp_migrate_incoming);
/* cmd_info.c */
CMD(qmp_query_version);
CMD(qmp_query_name);
CMD(qmp_query_kvm);
CMD(qmp_query_cpus_fast);
CMD(qmp_query_block);
CMD(qmp_query_blockstats);
CMD(qmp_query_qmp_schema);
CMD(qmp_system_powerdown);
#undef CMD

/* The whole table (commands.c), for the schema. */
const struct ctl_cmd *vmm_commands(size_t *n);

#endif
