/* The table-driven state walker: round trips, every truncation, hostile
 * sections, and the UART's own validation. */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/err.h"
#include "core/cpu_state.h"
#include "devices/uart8250.h"
#include "state/vmstate.h"

struct sample {
	uint8_t a;
	uint16_t b;
	uint32_t c[3];
	uint64_t d;
	uint8_t limit;
};

static int sample_validate(const void *st, struct kv_err *err)
{
	const struct sample *s = st;
	return s->limit > 10 ? kv_errf(err, ERANGE, "limit %u > 10", s->limit) : 0;
}

/* a and d were there from version 1; b, c and limit came with version 2 */
static const struct vmstate_field sample_fields[] = {
	VMS_FIELD(struct sample, a, 1),
	VMS_FIELD(struct sample, b, 2),
	VMS_ARRAY(struct sample, c, 2),
	VMS_FIELD(struct sample, d, 1),
	VMS_FIELD(struct sample, limit, 2),
};
static const struct vmstate_desc sample_desc =
	VMS_DESC("sample", struct sample, 2, sample_fields, sample_validate);

static const struct sample orig = { 0x11, 0x2233, { 1, 2, 0xdeadbeef }, 0x0102030405060708ULL, 7 };

static size_t save(uint8_t *buf, size_t cap)
{
	size_t len = 0;
	struct kv_err err;

	assert_int_equal(vmstate_save(&sample_desc, &orig, buf, cap, &len, &err), 0);
	assert_int_equal(len, vmstate_saved_size(&sample_desc));
	return len;
}

static void test_roundtrip(void **state)
{
	uint8_t buf[256];
	size_t len = save(buf, sizeof(buf));
	struct sample s = { 0 };
	struct kv_err err;

	assert_int_equal(vmstate_load(&sample_desc, &s, buf, len, &err), 0);
	assert_memory_equal(&s, &orig, sizeof(s));
	/* little-endian on the wire: version 2 first */
	assert_int_equal(buf[0], 2);
	assert_int_equal(buf[1], 0);
}

static void test_small_buffer(void **state)
{
	uint8_t buf[16];
	size_t len;
	struct kv_err err;

	assert_int_equal(vmstate_save(&sample_desc, &orig, buf, sizeof(buf), &len, &err), -ENOSPC);
}

static void test_truncation_every_offset(void **state)
{
	uint8_t buf[256];
	size_t len = save(buf, sizeof(buf));
	struct kv_err err;

	for (size_t n = 0; n < len; n++) {
		struct sample s;
		uint8_t *copy = malloc(n ? n : 1);
		memset(&s, 0x5a, sizeof(s));
		memcpy(copy, buf, n);
		assert_true(vmstate_load(&sample_desc, &s, copy, n, &err) < 0);
		/* the live state is untouched by a failed load */
		for (size_t i = 0; i < sizeof(s); i++)
			assert_int_equal(((uint8_t *)&s)[i], 0x5a);
		free(copy);
	}
}

static void expect_bad(uint8_t *buf, size_t len, int want, const char *why)
{
	struct sample s = { 0 };
	struct kv_err err = { "" };
	int r = vmstate_load(&sample_desc, &s, buf, len, &err);

	if (r != want)
		fail_msg("%s: got %d (%s), wanted %d", why, r, err.msg, want);
	assert_true(err.msg[0]);
}

static void test_hostile(void **state)
{
	uint8_t buf[256], b2[256];
	size_t len = save(buf, sizeof(buf));
	/* field 0 is "a": name_len at 8, name at 9, size at 10, count at 11..14 */

	memcpy(b2, buf, len); b2[0] = 3;               expect_bad(b2, len, -EPROTO, "newer version");
	memcpy(b2, buf, len); b2[4] = 6;               expect_bad(b2, len, -EBADMSG, "too many fields");
	memcpy(b2, buf, len); b2[9] = 'z';             expect_bad(b2, len, -EBADMSG, "unknown field");
	memcpy(b2, buf, len); b2[10] = 2;              expect_bad(b2, len, -EBADMSG, "wrong size");
	memcpy(b2, buf, len); b2[11] = 200;            expect_bad(b2, len, -EBADMSG, "wrong count");
	memcpy(b2, buf, len); b2[14] = 0xff;           expect_bad(b2, len, -EBADMSG, "huge count");
	memcpy(b2, buf, len); b2[8] = 250;             expect_bad(b2, len, -EBADMSG, "name runs past end");
	memcpy(b2, buf, len); b2[len] = 0;             expect_bad(b2, len + 1, -EBADMSG, "trailing byte");
	memcpy(b2, buf, len); b2[len - 1] = 11;        expect_bad(b2, len, -ERANGE, "validate rejects");
	/* the same field twice: overwrite "b" record's name with "a" (same length 1) */
	memcpy(b2, buf, len);
	{
		size_t pos = 8 + 1 + 1 + 1 + 4 + 1;	/* start of field b */
		b2[pos + 1] = 'a';
		b2[pos + 2] = 2;	/* sizes then differ: still rejected, as wrong size */
		expect_bad(b2, len, -EBADMSG, "duplicate/size");
	}
}

/* An older stream without a field keeps our value for it. */
static void test_older_stream(void **state)
{
	static const struct vmstate_field old_fields[] = {
		VMS_FIELD(struct sample, a, 1),
		VMS_FIELD(struct sample, d, 1),
	};
	static const struct vmstate_desc old_desc =
		VMS_DESC("sample", struct sample, 1, old_fields, NULL);
	uint8_t buf[256];
	size_t len;
	struct sample s = orig;
	struct sample src = { .a = 9, .d = 42 };
	struct kv_err err;

	assert_int_equal(vmstate_save(&old_desc, &src, buf, sizeof(buf), &len, &err), 0);
	assert_int_equal(vmstate_load(&sample_desc, &s, buf, len, &err), 0);
	assert_int_equal(s.a, 9);
	assert_int_equal(s.d, 42);
	assert_int_equal(s.b, orig.b);
}

/* A stream of our version that lacks a field of that version was damaged
 * or forged (a vCPU without its sregs would resume from reset values). */
static void test_missing_field(void **state)
{
	static const struct vmstate_field v2_without_b[] = {
		VMS_FIELD(struct sample, a, 1),
		VMS_ARRAY(struct sample, c, 2),
		VMS_FIELD(struct sample, d, 1),
		VMS_FIELD(struct sample, limit, 2),
	};
	static const struct vmstate_desc forged =
		VMS_DESC("sample", struct sample, 2, v2_without_b, NULL);
	uint8_t buf[256];
	size_t len;
	struct sample s = orig;
	struct kv_err err;

	assert_int_equal(vmstate_save(&forged, &orig, buf, sizeof(buf), &len, &err), 0);
	assert_int_equal(vmstate_load(&sample_desc, &s, buf, len, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "field b is missing"));
	assert_memory_equal(&s, &orig, sizeof(s));
}

/* A vCPU's MP state and XCRs are checked before KVM sees them: out-of-range
 * values from a forged stream left a guest silent while "running". */
static int load_vcpu(struct vcpu_state *v)
{
	size_t cap = vmstate_saved_size(&vcpu_state_vmstate), len;
	uint8_t *buf = malloc(cap);
	struct vcpu_state *out = calloc(1, sizeof(*out));
	struct kv_err err;
	int r;

	assert_int_equal(vmstate_save(&vcpu_state_vmstate, v, buf, cap, &len, &err), 0);
	r = vmstate_load(&vcpu_state_vmstate, out, buf, len, &err);
	free(out);
	free(buf);
	return r;
}

static void test_vcpu_ranges(void **state)
{
	struct vcpu_state *v = calloc(1, sizeof(*v));

	v->xcrs.nr_xcrs = 1;
	v->xcrs.xcrs[0].value = 0x7;		/* x87, SSE, AVX */
	v->mp_state.mp_state = KVM_MP_STATE_RUNNABLE;
	assert_int_equal(load_vcpu(v), 0);
	v->mp_state.mp_state = 7;		/* an s390 state */
	assert_int_equal(load_vcpu(v), -ERANGE);
	v->mp_state.mp_state = KVM_MP_STATE_HALTED;
	assert_int_equal(load_vcpu(v), 0);
	v->xcrs.xcrs[0].value = 0x5;		/* AVX without SSE */
	assert_int_equal(load_vcpu(v), -ERANGE);
	v->xcrs.xcrs[0].value = 0x6;		/* no x87 */
	assert_int_equal(load_vcpu(v), -ERANGE);
	v->xcrs.xcrs[0].value = 0x27;		/* one of the AVX-512 trio */
	assert_int_equal(load_vcpu(v), -ERANGE);
	v->xcrs.xcrs[0].value = 0xe7;		/* all three */
	assert_int_equal(load_vcpu(v), 0);
	v->xcrs.xcrs[0].xcr = 1;		/* no such register */
	assert_int_equal(load_vcpu(v), -ERANGE);
	free(v);
}

static void test_uart_state(void **state)
{
	const struct vmstate_desc *d = uart8250_ops.state;
	struct uart_state st = { .ier = 1, .lcr = 3, .rx_head = 5, .rx_count = 2 };
	struct uart_state out = { 0 };
	uint8_t buf[512];
	size_t len;
	struct kv_err err;

	assert_non_null(d);
	assert_int_equal(vmstate_save(d, &st, buf, sizeof(buf), &len, &err), 0);
	assert_int_equal(vmstate_load(d, &out, buf, len, &err), 0);
	assert_memory_equal(&st, &out, sizeof(st));
	st.rx_head = UART_RX_SIZE;	/* an index a hostile peer might send */
	assert_int_equal(vmstate_save(d, &st, buf, sizeof(buf), &len, &err), 0);
	assert_int_equal(vmstate_load(d, &out, buf, len, &err), -ERANGE);
	st.rx_head = 0;
	st.rx_count = UART_RX_SIZE + 1;
	assert_int_equal(vmstate_save(d, &st, buf, sizeof(buf), &len, &err), 0);
	assert_int_equal(vmstate_load(d, &out, buf, len, &err), -ERANGE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_small_buffer),
		cmocka_unit_test(test_truncation_every_offset),
		cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_older_stream),
		cmocka_unit_test(test_missing_field),
		cmocka_unit_test(test_vcpu_ranges),
		cmocka_unit_test(test_uart_state),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
