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

struct vmstate_desc {
	const char *name;
	unsigned version;
	size_t struct_size;
	const struct vmstate_field *fields;
	size_t nfields;
};

#define VMS_FIELD(type, field, ver) \
	{ #field, offsetof(type, field), sizeof(((type *)0)->field), 1, ver }
#define VMS_ARRAY(type, field, ver) \
	{ #field, offsetof(type, field), sizeof(((type *)0)->field[0]), \
	  sizeof(((type *)0)->field) / sizeof(((type *)0)->field[0]), ver }
#define VMS_DESC(sname, type, ver, table) \
	{ .name = sname, .version = ver, .struct_size = sizeof(type), \
	  .fields = table, .nfields = sizeof(table) / sizeof(table[0]) }

#endif
