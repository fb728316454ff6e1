/*
 * vmstate.h - table-driven descriptions of device and CPU state.
 *
 * A device describes the struct that holds its migratable state as a const
 * table of fields (name, offset, size, count).  Save and load are one
 * generic walker over the table (the migration issue adds it), so nobody
 * writes save/load twins by hand.  Fields are added with a higher version
 * number; a reader skips fields newer than the stream's version.
 */
#ifndef KVMOVE_STATE_VMSTATE_H
#define KVMOVE_STATE_VMSTATE_H

#include <stddef.h>
#include <stdint.h>

struct vmstate_field {
	const char *name;
	size_t offset;		/* in the described struct */
	size_t size;		/* of one element, bytes: 1, 2, 4 or 8 (little-endian on the wire) */
	size_t count;		/* elements (1 for scalars) */
	unsigned version;	/* first version that has the field */
};

struct kv_err;

struct vmstate_desc {
	const char *name;
	unsigned version;
	size_t struct_size;
	const struct vmstate_field *fields;
	size_t nfields;
	/* Called after a load: check every index, count and length the loaded
	 * state holds (it came from a peer or a file).  May be NULL. */
	int (*validate)(const void *state, struct kv_err *err);
};

#define VMS_FIELD(type, field, ver) \
	{ #field, offsetof(type, field), sizeof(((type *)0)->field), 1, ver }
#define VMS_ARRAY(type, field, ver) \
	{ #field, offsetof(type, field), sizeof(((type *)0)->field[0]), \
	  sizeof(((type *)0)->field) / sizeof(((type *)0)->field[0]), ver }
/* An opaque byte block: a kernel ABI struct (kvm_regs, kvm_xsave, ...) whose
 * layout KVM itself fixes; the name and size still have to match. */
#define VMS_BLOB(type, field, ver) \
	{ #field, offsetof(type, field), 1, sizeof(((type *)0)->field), ver }
#define VMS_DESC(sname, type, ver, table, check) \
	{ .name = sname, .version = ver, .struct_size = sizeof(type), \
	  .fields = table, .nfields = sizeof(table) / sizeof(table[0]), \
	  .validate = check }

/*
 * The walker.  A saved section is self-describing, so a reader can match
 * fields by name and check each one's size and count before copying:
 *
 *   u32 version            the writer's desc->version
 *   u32 nfields
 *   nfields times:
 *     u8  name_len, name_len bytes of name (no NUL)
 *     u8  elem_size (1, 2, 4, 8)
 *     u32 count
 *     count * elem_size bytes, little-endian elements
 *
 * Load rejects: a newer version than ours, an unknown field, a field whose
 * size or count differs from ours, a field twice, a field missing that the
 * section's version has, trailing bytes, any truncation, and whatever
 * desc->validate() rejects.  Fields we have that the stream lacks because
 * they came after its version keep the value they had.
 */
size_t vmstate_saved_size(const struct vmstate_desc *d);
int vmstate_save(const struct vmstate_desc *d, const void *state, uint8_t *buf,
		 size_t cap, size_t *len, struct kv_err *err);
int vmstate_load(const struct vmstate_desc *d, void *state, const uint8_t *buf,
		 size_t len, struct kv_err *err);

#endif
