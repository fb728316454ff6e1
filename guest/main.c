/*
 * main.c - what every CPU does at CPL 3: CPU 0 reads the boot data,
 * prints the banner, places the working set, starts the APs, brings up
 * the PCI devices and runs the fill; then all CPUs run the work loop
 * (heartbeat and device work on CPU 0, verifier slices, periodic
 * VERIFY/NET/DISK lines, runtime limit).
 */
#include "boot.h"
#include "clock.h"
#include "cmdline.h"
#include "cpuidrep.h"
#include "console.h"
#include "devices.h"
#include "lib.h"
#include "memmap.h"
#include "smp.h"
#include "verifier.h"
#include "x86.h"

#define DEBUG_EXIT_PORT 0xf4	/* kvmove: a write here shuts the VM down cleanly */

enum phase { PH_BOOT, PH_FILL, PH_RUN, PH_STOP };

static struct config cfg;	/* written by CPU 0 before PH_FILL, then read-only */
static uint32_t phase;
static uint32_t fill_done;	/* APs that finished their fill */

/* Work-loop state, one page per CPU. */
struct loop {
	uint64_t hb_seq, next_hb, next_verify, ready_us;
	uint64_t last_us, offset_us;	/* keep time monotonic if the clock steps back */
};
static union {
	struct loop s;
	uint8_t pad[4096];
} loops[MAX_CPUS] __attribute__((section(".noinit"), aligned(4096)));

static __attribute__((noreturn)) void idle_forever(void)
{
	for (;;)
		cpu_relax();	/* hlt is CPL 0 only; IF is 0 anyway */
}

static void set_phase(enum phase p)
{
	__atomic_store_n(&phase, p, __ATOMIC_RELEASE);
}

static void wait_phase(enum phase p)
{
	while (__atomic_load_n(&phase, __ATOMIC_ACQUIRE) < p)
		cpu_relax();
}

/*
 * The loop's time never steps back: a hypervisor that restores kvmclock
 * wrongly after a migration gets a WARN line, and the guest carries on
 * from where it was (steps forward, e.g. downtime, are real and kept).
 */
static uint64_t monotonic_us(struct loop *ls, unsigned cpu, unsigned hw)
{
	uint64_t t = clock_us(hw) + ls->offset_us;	/* modulo 2^64 */

	if ((int64_t)(t - ls->last_us) < 0) {
		uint64_t back = ls->last_us - t;
		ls->offset_us += back;
		t = ls->last_us;
		if (back > 1000)
			con_line("WARN clock went backwards by %lu us on cpu=%u", back, cpu);
	}
	ls->last_us = t;
	return t;
}

static void print_verify(unsigned cpu)
{
	struct vfy_stats s;

	vfy_stats(cpu, &s);
	if (!s.fails)
		con_line("VERIFY OK %lu cpu=%u pages=%lu writes=%lu", s.passes, cpu, s.pages,
			 s.writes);
	else	/* never "OK" again once something was wrong */
		con_line("VERIFY BAD %lu cpu=%u pages=%lu writes=%lu fails=%lu", s.passes, cpu,
			 s.pages, s.writes, s.fails);
}

static __attribute__((noreturn)) void run_loop(unsigned cpu, unsigned hw)
{
	struct loop *ls = &loops[cpu].s;
	volatile uint64_t stack_iter = 0;	/* bound to the verifier's state page */
	const uint64_t verify_us = cfg.verify_every_ms * 1000;
	uint64_t now = clock_us(hw);

	memset(ls, 0, sizeof(*ls));
	ls->last_us = ls->ready_us = ls->next_hb = now;
	ls->next_verify = now + verify_us;
	vfy_start(cpu, now);
	for (;;) {
		now = monotonic_us(ls, cpu, hw);
		if (cpu == 0) {
			if (cfg.hb_us && now >= ls->next_hb) {
				con_line("HB %lu %lu", ls->hb_seq++, now);
				ls->next_hb += cfg.hb_us;
				if (ls->next_hb <= now)	/* late (paused?): don't burst */
					ls->next_hb = now + cfg.hb_us;
			}
			if (cfg.runtime_s && now - ls->ready_us >= cfg.runtime_s * 1000000) {
				set_phase(PH_STOP);
				con_line("DONE");
				outb(DEBUG_EXIT_PORT, 0);
				idle_forever();
			}
			devices_poll(now);
		} else if (__atomic_load_n(&phase, __ATOMIC_ACQUIRE) == PH_STOP) {
			idle_forever();
		}
		vfy_step(cpu, now, &stack_iter);
		if (verify_us && now >= ls->next_verify) {
			print_verify(cpu);
			if (cpu == 0)
				devices_print_stats();
			ls->next_verify += verify_us;
			if (ls->next_verify <= now)
				ls->next_verify = now + verify_us;
		}
	}
}

static void print_config_warnings(const struct memmap_info *mi, uint64_t wss)
{
	for (unsigned i = 0; i < cfg.nbad && i < CMDLINE_MAX_BAD; i++)
		con_line("WARN cmdline: ignored '%s' (bad value)", cfg.bad[i]);
	if (wss < ALIGN_DOWN(cfg.wss, 4096))
		con_line("WARN wss=%lu is more than the free RAM; clamped to wss=%lu", cfg.wss, wss);
	else if (wss > ALIGN_DOWN(cfg.wss, 4096))
		con_line("WARN wss=%lu raised to wss=%lu (one page per CPU at least)", cfg.wss, wss);
	if (mi->unmapped_ram)
		con_line("WARN %lu bytes of RAM above the %s page-table limit are not used",
			 mi->unmapped_ram, paging_1g ? "512 GiB" : "72 GiB (no 1 GiB pages)");
}

void cpu0_main(unsigned hw)
{
	const uint64_t tsc_user = rdtsc();	/* CPL 0 ended here */
	const struct hvm_start_info *si = (const struct hvm_start_info *)(uintptr_t)boot_start_info;
	const bool si_ok = si && si->magic == HVM_START_MAGIC;
	struct memmap_info mi;
	struct wss_layout wl;
	uint64_t cpl0_us, t, fill_us;
	unsigned n;

	if (si_ok)
		paging_extend(si);	/* map RAM above 4 GiB (without 1 GiB pages) */
	con_init();
	cmdline_defaults(&cfg);
	if (si_ok && si->cmdline_paddr)
		cmdline_parse((const char *)(uintptr_t)si->cmdline_paddr, &cfg);
	if (!clock_init(cfg.clock)) {
		con_line("ERROR no usable clock (no kvmclock, PIT calibration failed)");
		idle_forever();
	}
	cpl0_us = clock_us_at_tsc(tsc_user);
	if (!si_ok || !memmap_read(si, (uint64_t)(uintptr_t)__image_end, paging_top, &mi)) {
		con_line("ERROR no usable hvm_start_info memory map");
		idle_forever();
	}
	if (!memmap_alloc(&mi, cfg.wss / 4096, cfg.cpus, &wl)) {
		con_line("ERROR no RAM left for the working set (RAM %lu bytes)", mi.total_ram);
		idle_forever();
	}

	con_line("KVMOVE-TESTGUEST v1 cpus=%lu mem=%lu wss=%lu rate=%lu hb=%lu seed=%lu clock=%s "
		 "compress=%lu", cfg.cpus, mi.total_ram, wl.npages * 4096, cfg.rate, cfg.hb_us,
		 cfg.seed, clock_name(), cfg.compress);
	print_config_warnings(&mi, wl.npages * 4096);
	if (cfg.cpuid_report)
		cpuid_report();
	for (unsigned i = 0; i < wl.nwss; i++)
		con_line("WSS 0x%lx 0x%lx", wl.wss[i].start, wl.wss[i].end);

	n = smp_start((unsigned)cfg.cpus, &mi);
	con_line("CPUS %u", n);
	devices_init(&cfg);

	vfy_setup(&wl, cfg.seed, n, cfg.rate, (unsigned)cfg.compress);
	t = clock_us(hw);
	set_phase(PH_FILL);
	vfy_fill(0, hw);
	while (__atomic_load_n(&fill_done, __ATOMIC_ACQUIRE) < n - 1)
		cpu_relax();
	fill_us = clock_us(hw) - t;
	con_line("SETUP cpl0_us=%lu fill_us=%lu", cpl0_us, fill_us);
	con_line("READY");
	set_phase(PH_RUN);
	run_loop(0, hw);
}

void ap_main(unsigned hw)
{
	int cpu = smp_checkin();

	if (cpu < 0)
		idle_forever();		/* too late: CPU 0 already split the work */
	wait_phase(PH_FILL);
	vfy_fill((unsigned)cpu, hw);
	__atomic_fetch_add(&fill_done, 1, __ATOMIC_ACQ_REL);
	wait_phase(PH_RUN);
	run_loop((unsigned)cpu, hw);
}
