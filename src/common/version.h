/* version.h - kvmove's version (the greeting, query-version, --version). */
#ifndef KVMOVE_COMMON_VERSION_H
#define KVMOVE_COMMON_VERSION_H

#define KVMOVE_VERSION_MAJOR 0
#define KVMOVE_VERSION_MINOR 2
#define KVMOVE_VERSION_MICRO 0
#define KVMOVE_VERSION "0.2.0"

#endif
