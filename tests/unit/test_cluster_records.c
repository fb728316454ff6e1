/*
 * What the cluster verbs read, checked without an etcd: endpoint
 * resolution and URL checks (cluster/clusterconf.c), names, VM definitions
 * and migration IDs (cluster/records.c), and node records, node settings
 * and reach keys turned into placement input (cluster/nodeset.c) -- all of
 * it bytes anyone with access to etcd could have written.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "cluster/clusterconf.h"
#include "cluster/nodeset.h"
#include "cluster/records.h"

static void urls(void **state)
{
	static const char *const good[] = {
		"http://127.0.0.1:2379", "http://etcd-1.example.org:2379",
		"http://[::1]:2379", "http://h1:1,http://h2:65535",
	};
	static const char *const bad[] = {
		"", "https://h1:2379", "h1:2379", "http://h1", "http://h1:", "http://h1:0",
		"http://h1:65536", "http://h1:2379/", "http://h1:2379/v3", "http://u@h1:2379",
		"http://:2379", "http://h1:2379,", ",http://h1:2379", "http://h1:2379,,http://h2:1",
		"http://-h1:2379", "http://[::1:2379", "http://[zz]:2379", "http://h 1:2379",
		"http://h1:23a9",
	};
	char many[1024] = "";
	struct kv_err err;

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_int_equal(clusterconf_check_endpoints(good[i], &err), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err.msg[0] = '\0';
		assert_int_equal(clusterconf_check_endpoints(bad[i], &err), -EINVAL);
		assert_true(strlen(err.msg) > 0);
	}
	for (int i = 0; i < 17; i++)
		snprintf(many + strlen(many), sizeof(many) - strlen(many), "%shttp://h%d:2379",
			 i ? "," : "", i);
	assert_int_equal(clusterconf_check_endpoints(many, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "more than 16"));
}

static char *write_conf(const char *text)
{
	char *path = strdup("/tmp/kvmove-test-conf-XXXXXX");
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

static void resolution_order(void **state)
{
	struct cluster_etcd ce;
	struct kv_err err;
	char *conf = write_conf("# cluster\n\n  other = x\netcd = http://c1:2379,http://c2:2379 \n");
	char *dup = write_conf("etcd=http://c1:2379\netcd=http://c2:2379\n");
	char *badf = write_conf("# nothing\netcd=http://c1\n");
	char *none = write_conf("psk=/x\n");

	(void)state;
	assert_int_equal(clusterconf_resolve_with("http://o:1", "http://e:2", conf, &ce, &err), 0);
	assert_string_equal(ce.endpoints, "http://o:1");
	assert_int_equal(ce.source, CLUSTER_ETCD_OPTION);
	assert_int_equal(clusterconf_resolve_with(NULL, "http://e:2", conf, &ce, &err), 0);
	assert_string_equal(ce.endpoints, "http://e:2");
	assert_int_equal(ce.source, CLUSTER_ETCD_ENV);
	assert_int_equal(clusterconf_resolve_with(NULL, "", conf, &ce, &err), 0);
	assert_string_equal(ce.endpoints, "http://c1:2379,http://c2:2379");
	assert_int_equal(ce.source, CLUSTER_ETCD_CONF);
	assert_non_null(strstr(ce.from, "line 4"));
	assert_int_equal(clusterconf_resolve_with(NULL, NULL, none, &ce, &err), 0);
	assert_string_equal(ce.endpoints, CLUSTER_EMBEDDED_ENDPOINT);
	assert_int_equal(ce.source, CLUSTER_ETCD_DEFAULT);
	assert_int_equal(clusterconf_resolve_with(NULL, NULL, "/nonexistent/kvmove.conf", &ce,
						  &err), 0);
	assert_int_equal(ce.source, CLUSTER_ETCD_DEFAULT);

	/* errors name where the bad value came from */
	assert_int_equal(clusterconf_resolve_with(NULL, NULL, dup, &ce, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "second etcd= line"));
	assert_int_equal(clusterconf_resolve_with(NULL, NULL, badf, &ce, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "line 2"));
	assert_non_null(strstr(err.msg, "needs a port"));
	assert_int_equal(clusterconf_resolve_with("ftp://x:1", NULL, NULL, &ce, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "--etcd"));
	assert_int_equal(clusterconf_resolve_with(NULL, "http://x", NULL, &ce, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "$KVMOVE_ETCD"));
	unlink(conf);
	unlink(dup);
	unlink(badf);
	unlink(none);
	free(conf);
	free(dup);
	free(badf);
	free(none);
}

static void names(void **state)
{
	(void)state;
	assert_true(cluster_vm_name_ok("web1"));
	assert_true(cluster_vm_name_ok("a"));
	assert_true(cluster_vm_name_ok("0-x"));
	assert_true(cluster_vm_name_ok("abcdefghijklmnopqrstuvwxyz012345"));	/* 32 */
	assert_false(cluster_vm_name_ok("abcdefghijklmnopqrstuvwxyz0123456"));
	assert_false(cluster_vm_name_ok(""));
	assert_false(cluster_vm_name_ok("-a"));
	assert_false(cluster_vm_name_ok("Web"));
	assert_false(cluster_vm_name_ok("a/b"));
	assert_false(cluster_vm_name_ok("a_b"));
	assert_false(cluster_vm_name_ok(NULL));
	assert_true(cluster_node_name_ok("h1.example_2-X"));
	assert_false(cluster_node_name_ok("free:x"));
	assert_false(cluster_node_name_ok("a/b"));
	assert_false(cluster_node_name_ok(".h"));
	assert_true(cluster_path_ok("/a b", 10));
	assert_false(cluster_path_ok("a", 10));
	assert_false(cluster_path_ok("/a\nb", 10));
	assert_false(cluster_path_ok("/0123456789", 10));
}

static void specs(void **state)
{
	struct vm_spec s;
	struct kv_err err;
	const char *good = "{\"name\":\"web1\",\"mem\":536870912,\"cpus\":2,\"kernel\":\"/k\","
			   "\"initrd\":null,\"append\":\"x=1\",\"disks\":[{\"path\":\"/d\","
			   "\"readonly\":true}],\"nets\":[{\"bridge\":\"br0\"},{\"bridge\":"
			   "\"vm-net.1\",\"mac\":\"52:54:00:12:34:56\"}],\"desired\":\"running\","
			   "\"created\":1}";
	static const char *const bad[] = {
		"[]", "{", "{\"mem\":536870912,\"cpus\":2,\"kernel\":\"k\"}",
		"{\"mem\":1,\"cpus\":2,\"kernel\":\"/k\"}",
		"{\"mem\":536870912,\"cpus\":0,\"kernel\":\"/k\"}",
		"{\"mem\":536870912,\"cpus\":2,\"kernel\":\"/k\",\"desired\":\"flying\"}",
		"{\"mem\":536870912,\"cpus\":2,\"kernel\":\"/k\",\"disks\":[{\"path\":\"rel\"}]}",
		"{\"mem\":536870912,\"cpus\":2,\"kernel\":\"/k\",\"disks\":{}}",
		"{\"name\":\"other\",\"mem\":536870912,\"cpus\":2,\"kernel\":\"/k\"}",
		"{\"mem\":\"512M\",\"cpus\":2,\"kernel\":\"/k\"}",
		/* NICs: a bridge name that is no interface name, a bad MAC, too many */
		"{\"mem\":536870912,\"cpus\":2,\"kernel\":\"/k\",\"nets\":[{\"bridge\":\"br 0\"}]}",
		"{\"mem\":536870912,\"cpus\":2,\"kernel\":\"/k\",\"nets\":[{\"bridge\":"
		"\"averyverylongbridge\"}]}",
		"{\"mem\":536870912,\"cpus\":2,\"kernel\":\"/k\",\"nets\":[{\"bridge\":\"br0\","
		"\"mac\":\"zz\"}]}",
		"{\"mem\":536870912,\"cpus\":2,\"kernel\":\"/k\",\"nets\":[{},{},{},{},{}]}",
		"{\"mem\":536870912,\"cpus\":2,\"kernel\":\"/k\",\"nets\":[{\"bridge\":\"../x\"}]}",
		/* restart policies: an unknown one, a number */
		"{\"mem\":536870912,\"cpus\":2,\"kernel\":\"/k\",\"restart\":\"sometimes\"}",
		"{\"mem\":536870912,\"cpus\":2,\"kernel\":\"/k\",\"restart\":1}",
	};
	const char *restart = "{\"mem\":536870912,\"cpus\":2,\"kernel\":\"/k\","
			      "\"restart\":\"on-failure\"}";

	(void)state;
	assert_int_equal(vm_spec_parse("web1", good, strlen(good), &s, &err), 0);
	assert_int_equal(s.mem, 536870912);
	assert_int_equal(s.cpus, 2);
	assert_string_equal(s.kernel, "/k");
	assert_null(s.initrd);
	assert_string_equal(s.append, "x=1");
	assert_int_equal(s.ndisks, 1);
	assert_int_equal(s.nnets, 2);
	assert_true(s.running);
	assert_int_equal(s.restart, VM_RESTART_NEVER);	/* absent: never */
	vm_spec_free(&s);
	assert_int_equal(vm_spec_parse("web1", restart, strlen(restart), &s, &err), 0);
	assert_int_equal(s.restart, VM_RESTART_ON_FAILURE);
	assert_string_equal(vm_restart_name(s.restart), "on-failure");
	vm_spec_free(&s);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(vm_spec_parse("web1", bad[i], strlen(bad[i]), &s, &err), -EPROTO);
		assert_non_null(strstr(err.msg, "/kvmove/vms/web1/spec"));
		assert_null(s.j);
	}
	assert_int_equal(cluster_config_limit(NULL, 0), 1);
	assert_int_equal(cluster_config_limit("{\"migration-limit\":3}", 21), 3);
	assert_int_equal(cluster_config_limit("{\"migration-limit\":-3}", 22), 1);
	assert_int_equal(cluster_config_limit("nonsense", 8), 1);
}

/* "cpu": absent is host; a model is parsed (canonical spelling kept); a bad
 * one, or one that is no string, is an error naming the field, and etcd's
 * bytes in the message are made printable. */
static void spec_cpu(void **state)
{
	static const char base[] = "{\"mem\":536870912,\"cpus\":2,\"kernel\":\"/k\"";
	static const char *const bad[] = {
		",\"cpu\":\"pentium\"}", ",\"cpu\":\"x86-64,+nosuch\"}", ",\"cpu\":\"x86-64,avx\"}",
		",\"cpu\":\"\"}", ",\"cpu\":2}", ",\"cpu\":[\"x86-64\"]}",
		",\"cpu\":\"\\u001b[31mred\"}",
	};
	char text[512];
	struct vm_spec s;
	struct kv_err err;

	(void)state;
	snprintf(text, sizeof(text), "%s}", base);
	assert_int_equal(vm_spec_parse("web1", text, strlen(text), &s, &err), 0);
	assert_true(s.cpu.host);
	assert_string_equal(s.cpu.spec, "host");
	vm_spec_free(&s);
	snprintf(text, sizeof(text), "%s,\"cpu\":null}", base);
	assert_int_equal(vm_spec_parse("web1", text, strlen(text), &s, &err), 0);
	assert_true(s.cpu.host);
	vm_spec_free(&s);
	snprintf(text, sizeof(text), "%s,\"cpu\":\"x86-64-v2,+aes,-popcnt\"}", base);
	assert_int_equal(vm_spec_parse("web1", text, strlen(text), &s, &err), 0);
	assert_false(s.cpu.host);
	assert_string_equal(s.cpu.spec, "x86-64-v2,+aes,-popcnt");
	assert_true(cpu_feats_has(&s.cpu.feats, (unsigned)cpu_feature_find("aes")));
	assert_false(cpu_feats_has(&s.cpu.feats, (unsigned)cpu_feature_find("popcnt")));
	assert_true(cpu_feats_has(&s.cpu.feats, (unsigned)cpu_feature_find("sse4_2")));
	vm_spec_free(&s);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "%s%s", base, bad[i]);
		assert_int_equal(vm_spec_parse("web1", text, strlen(text), &s, &err), -EPROTO);
		assert_non_null(strstr(err.msg, "/kvmove/vms/web1/spec: \"cpu\""));
		for (const char *p = err.msg; *p; p++)
			assert_true(*p >= 0x20 && *p < 0x7f);
		assert_null(s.j);
	}
}

static void migration_ids(void **state)
{
	char id[32], id2[32];
	struct kv_err err;

	(void)state;
	assert_int_equal(cluster_migration_id_new(id, sizeof(id), &err), 0);
	assert_int_equal(cluster_migration_id_new(id2, sizeof(id2), &err), 0);
	assert_true(cluster_migration_id_ok(id));
	assert_string_not_equal(id, id2);
	assert_false(cluster_migration_id_ok("m20251203-abcdef"));
	assert_false(cluster_migration_id_ok("m20251203101010-ABCDEF"));
	assert_true(cluster_migration_id_ok("m20251203101010-abc123"));
	assert_true(cluster_migration_state_terminal("cancelled"));
	assert_false(cluster_migration_state_terminal("queued"));
}

static struct store_kv kv(const char *key, const char *value)
{
	return (struct store_kv){ .key = (char *)key, .value = (char *)value,
				  .vlen = strlen(value) };
}

static void nodes(void **state)
{
	struct store_kv nk[] = {
		kv("/kvmove/nodes/h1", "{\"name\":\"h1\",\"cpus\":4,\"cpus-used\":1,"
		   "\"ram-total\":4294967296,\"ram-used\":536870912,\"load\":[0.5,0.2,0.1],"
		   "\"cpu-vendor\":\"GenuineIntel\",\"cpu-features\":[\"avx2\",\"sse4_2\"],"
		   "\"vms\":[\"a\"]}"),
		kv("/kvmove/nodes/h2", "{\"name\":\"h2\",\"cpus\":\"many\"}"),
		kv("/kvmove/nodes/h3", "not json"),
		kv("/kvmove/nodes/h4", "{\"name\":\"h5\",\"cpus\":1,\"cpus-used\":0,"
		   "\"ram-total\":1,\"ram-used\":0}"),
		kv("/kvmove/nodes/bad/name", "{}"),
	};
	struct store_kv ck[] = {
		kv("/kvmove/nodecfg/h1", "{\"maintenance\":false,\"migration-limit\":2}"),
		kv("/kvmove/nodecfg/h9", "{\"maintenance\":true,\"migration-limit\":null}"),
	};
	struct store_kv rk[] = {
		kv("/kvmove/reach/web1/h1", "{\"ok\":false,\"reason\":\"/d: gone\\u001b[2J\"}"),
		kv("/kvmove/reach/web1/h9", "{\"ok\":true}"),
	};
	struct store_list nl = { .kvs = nk, .n = 5 }, cl = { .kvs = ck, .n = 2 },
			  rl = { .kvs = rk, .n = 2 };
	struct place_verdict v[8];
	struct place_vm vm = { .name = "web1", .mem = 1 << 20, .cpus = 1 };
	struct nodeset ns;
	struct kv_err err;
	int h1, h9;

	(void)state;
	assert_int_equal(nodeset_build(&ns, &nl, &cl, &rl, "web1", "{\"migration-limit\":3}", 21,
				       &err), 0);
	assert_int_equal(ns.n, 5);	/* h1 h2 h3 h4 h9, sorted */
	assert_int_equal(ns.ignored, 1);
	assert_string_equal(ns.v[0].name, "h1");
	assert_string_equal(ns.v[4].name, "h9");
	h1 = nodeset_find(&ns, "h1");
	h9 = nodeset_find(&ns, "h9");
	assert_int_equal(h1, 0);
	assert_int_equal(h9, 4);
	assert_int_equal(nodeset_find(&ns, "h7"), -1);

	assert_true(ns.place[h1].up);
	assert_int_equal(ns.place[h1].cpus, 4);
	assert_int_equal(ns.place[h1].cpus_used, 1);
	assert_int_equal(ns.place[h1].ram_total, 4294967296ULL);
	assert_int_equal(ns.place[h1].nfeatures, 2);
	assert_string_equal(ns.place[h1].cpu_vendor, "GenuineIntel");
	assert_int_equal(ns.v[h1].migration_limit, 2);
	assert_true(ns.v[h1].limit_from_cfg);
	assert_int_equal(ns.place[h1].reach, 0);
	assert_null(strchr(ns.v[h1].reach_reason, '\033'));	/* sanitised */
	assert_string_equal(nodeset_state(&ns.v[h1]), "up");

	/* only settings: down, in maintenance, the cluster's limit */
	assert_false(ns.place[h9].up);
	assert_true(ns.place[h9].maintenance);
	assert_int_equal(ns.v[h9].migration_limit, 3);
	assert_string_equal(nodeset_state(&ns.v[h9]), "down");

	/* malformed records: listed, never chosen, and said why */
	assert_string_equal(nodeset_state(&ns.v[1]), "bad record");
	assert_string_equal(nodeset_state(&ns.v[2]), "bad record");
	assert_string_equal(nodeset_state(&ns.v[3]), "bad record");
	assert_int_equal(nodeset_choose(&ns, &vm, v), -1);
	assert_non_null(strstr(v[1].reason, "\"cpus\""));
	assert_non_null(strstr(v[2].reason, "not a JSON object"));
	assert_non_null(strstr(v[3].reason, "names another node"));
	assert_non_null(strstr(v[h1].reason, "cannot reach the VM's storage: /d: gone?[2J"));
	assert_string_equal(v[h9].reason, "down");
	nodeset_free(&ns);

	/* without reach keys nobody has checked the VM yet */
	assert_int_equal(nodeset_build(&ns, &nl, &cl, NULL, NULL, NULL, 0, &err), 0);
	assert_int_equal(ns.place[0].reach, -1);
	assert_int_equal(ns.v[0].migration_limit, 2);
	nodeset_free(&ns);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(urls),
		cmocka_unit_test(resolution_order),
		cmocka_unit_test(names),
		cmocka_unit_test(specs),
		cmocka_unit_test(spec_cpu),
		cmocka_unit_test(migration_ids),
		cmocka_unit_test(nodes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
