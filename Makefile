# Thin wrapper around CMake + Ninja + CTest. Every target installs what it
# needs first (scripts/deps.sh is idempotent and silent when all is present).
BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 600
FUZZ_SMOKE_SECONDS ?= 15
CMAKE_FLAGS ?=

.PHONY: all deps configure check check-fast check-unit check-slow check-asan fuzz fuzz-smoke fuzz-build demo demo-vmm bench bench-smoke clean

all: configure
	cmake --build $(BUILD)

deps:
	@bash scripts/deps.sh

configure: deps
	@test -f $(BUILD)/build.ninja || cmake -S . -B $(BUILD) -G Ninja $(CMAKE_FLAGS)

# Every test: the fast tier first (unit, integration with the test guest,
# benchmark smoke, the cluster and console tests; ~36 min on a 2-core PVM host), then the slow tier (Debian's
# kernel booting and migrating: ~10 min on PVM hosts, where its kernel code is
# emulated); ~46 min in all (.ci/run adds ~5 min of ASan unit tests).
# Between the tiers: every fuzz target for a few seconds on its seeds.
check: all
	cd $(BUILD) && ctest --output-on-failure -LE slow
	$(MAKE) fuzz-smoke
	cd $(BUILD) && ctest --output-on-failure -L slow

check-fast: all
	cd $(BUILD) && ctest --output-on-failure -LE slow

check-slow: all
	cd $(BUILD) && ctest --output-on-failure -L slow

check-unit: all
	cd $(BUILD) && ctest --output-on-failure -L unit

# Unit tests under ASan+UBSan (no guest: the guest is freestanding).
check-asan: deps
	@test -f $(ASAN_BUILD)/build.ninja || cmake -S . -B $(ASAN_BUILD) -G Ninja \
		-DKVMOVE_SANITIZE=ON -DKVMOVE_BUILD_GUEST=OFF -DCMAKE_BUILD_TYPE=Debug
	cmake --build $(ASAN_BUILD)
	cd $(ASAN_BUILD) && ctest --output-on-failure -L unit

# libFuzzer targets (tests/fuzz/, docs/FUZZING.md) in their own clang build.
# fuzz-smoke: each for FUZZ_SMOKE_SECONDS on its seeds (~3 min), fails on
# any crash, leak or hang; fuzz: FUZZ_SECONDS each (default 10 min), then a
# table of executions and coverage.
fuzz-build: deps
	@test -f $(FUZZ_BUILD)/build.ninja || CC=clang cmake -S . -B $(FUZZ_BUILD) -G Ninja \
		-DKVMOVE_FUZZ=ON -DKVMOVE_BUILD_GUEST=OFF
	cmake --build $(FUZZ_BUILD)

fuzz-smoke: fuzz-build
	python3 scripts/fuzz.py --build $(FUZZ_BUILD) --seconds $(FUZZ_SMOKE_SECONDS) --smoke

fuzz: fuzz-build
	python3 scripts/fuzz.py --build $(FUZZ_BUILD) --seconds $(FUZZ_SECONDS)

# The product as an operator meets it: a three-host cluster (namespaces),
# VMs placed by it, a migration by name, a host drained (scripts/demo-cluster.sh).
demo: all
	@bash scripts/demo-cluster.sh $(BUILD)

# One live migration between two VMMs, no cluster (scripts/demo.sh).
demo-vmm: all
	@bash scripts/demo.sh $(BUILD)

# kvmove vs QEMU migration benchmark (~1 h; not part of check): report in
# bench/results/<timestamp>/ and docs/benchmarks.md.  bench-smoke: ~1 min.
bench: all
	python3 bench/run.py --build $(BUILD) $(BENCH_FLAGS)

bench-smoke: all
	python3 bench/run.py --build $(BUILD) --smoke $(BENCH_FLAGS)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
