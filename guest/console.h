/*
 * console.h - polled output on the 8250 UART at port 0x3f8. Every call
 * prints one whole line (a '\n' is appended) under a spinlock, so lines
 * from several CPUs never interleave. Works at CPL 3 (IOPL 3) and CPL 0.
 */
#ifndef GUEST_CONSOLE_H
#define GUEST_CONSOLE_H

void con_init(void);
void con_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* For exception handlers: don't wait forever for a lock a dead CPU holds. */
void con_line_unlocked_after_timeout(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

#endif
