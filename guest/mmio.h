/*
 * mmio.h - device registers for CPL 3: a window of uncached (PCD|PWT)
 * 4 KiB mappings of physical MMIO ranges (PCI BARs), and width-exact
 * volatile accessors. Every access to a device register is a VM exit
 * (tens of microseconds on nested hosts), so callers keep them rare.
 */
#ifndef GUEST_MMIO_H
#define GUEST_MMIO_H

#include <stdint.h>

/*
 * Map [pa, pa + len) uncached and return its CPL 3 address (NULL when the
 * window is full or pa is not a valid physical address). CPU 0 only.
 */
volatile void *mmio_map(uint64_t pa, uint64_t len);

static inline uint8_t mmio_r8(volatile void *p) { return *(volatile uint8_t *)p; }
static inline uint16_t mmio_r16(volatile void *p) { return *(volatile uint16_t *)p; }
static inline uint32_t mmio_r32(volatile void *p) { return *(volatile uint32_t *)p; }
static inline void mmio_w8(volatile void *p, uint8_t v) { *(volatile uint8_t *)p = v; }
static inline void mmio_w16(volatile void *p, uint16_t v) { *(volatile uint16_t *)p = v; }
static inline void mmio_w32(volatile void *p, uint32_t v) { *(volatile uint32_t *)p = v; }

#endif
