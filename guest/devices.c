/*
 * devices.c - see devices.h. One device of each kind is driven (the
 * first found); others get a PCI line saying so.
 */
#include "devices.h"

#include <stdbool.h>

#include "console.h"
#include "diskvfy.h"
#include "lib.h"
#include "pci.h"
#include "vblk.h"
#include "virtio.h"
#include "vnet.h"

static bool have_net, have_blk;

static void init_net(const struct pci_fn *f, const struct config *cfg)
{
	char why[96];

	if (!cfg->net)
		con_line("PCI %s not used (net=0)", f->bdf);
	else if (have_net)
		con_line("PCI %s not used (one virtio-net device is driven)", f->bdf);
	else if (!vnet_init(f, cfg->ip, cfg->ip_set, why, sizeof(why)))
		con_line("PCI %s %s", f->bdf, why);
	else
		have_net = true;
}

static void init_blk(const struct pci_fn *f, const struct config *cfg)
{
	struct vblk_info info;
	char why[96];

	if (!cfg->disk)
		con_line("PCI %s not used (disk=0)", f->bdf);
	else if (have_blk)
		con_line("PCI %s not used (one virtio-blk device is driven)", f->bdf);
	else if (!vblk_init(f, &info, why, sizeof(why)))
		con_line("PCI %s %s", f->bdf, why);
	else {
		have_blk = true;
		dvfy_init(&info, cfg);
	}
}

void devices_init(const struct config *cfg)
{
	struct pci_fn fns[PCI_MAX_FNS];
	unsigned n = pci_scan(fns, PCI_MAX_FNS);

	for (unsigned i = 0; i < n; i++) {
		const struct pci_fn *f = &fns[i];

		if (f->vendor != VIRTIO_VENDOR || f->device < 0x1000 || f->device > 0x107f)
			continue;
		if (f->device == VIRTIO_DEV_NET) {
			con_line("PCI %s %04x:%04x virtio-net", f->bdf, f->vendor, f->device);
			init_net(f, cfg);
		} else if (f->device == VIRTIO_DEV_BLK) {
			con_line("PCI %s %04x:%04x virtio-blk", f->bdf, f->vendor, f->device);
			init_blk(f, cfg);
		} else if (f->device < 0x1040) {
			con_line("PCI %s %04x:%04x transitional virtio device: not used "
				 "(modern only: disable-legacy=on)", f->bdf, f->vendor, f->device);
		}
	}
}

void devices_poll(uint64_t now_us)
{
	vnet_poll(now_us);
	dvfy_step(now_us);
}

void devices_print_stats(void)
{
	vnet_print_stats();
	dvfy_print_stats();
}
