// Linux calls that Glibc's Swift overlay does not export: epoll, eventfd, timerfd, accept4.
#ifndef CLINUXSHIMS_H
#define CLINUXSHIMS_H

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <sys/socket.h>
#include <stddef.h>
#include <stdint.h>

/// accept4(2); defined in shim.c, which sets _GNU_SOURCE (doing so here breaks SwiftGlibc).
int cls_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags);

/// Number of CPUs in this thread's affinity mask (sched_getaffinity), or -1.
int cls_affinity_cpu_count(void);

/// Returns freed heap memory of every malloc arena to the kernel (glibc malloc_trim(0)).
void cls_release_free_memory(void);

/// Names the calling thread (15 bytes at most are kept), for `top -H` and debuggers.
void cls_set_thread_name(const char *name);

/// 1 when the CPU runs AVX-512 F, BW, DQ and VL instructions (what the AVX512Kernels target
/// is compiled for), else 0.
int cls_cpu_has_avx512(void);
/// Nonzero when the CPU runs AVX2 and FMA (x86-64-v3 vector code).
int cls_cpu_has_avx2_fma(void);

/// Hints the CPU to bring the cache line holding `address` into all cache levels for reading
/// (never faults). Inlined into Swift callers.
static inline void cls_prefetch(const void *address) { __builtin_prefetch(address, 0, 3); }

/// CRC-32C (Castagnoli) of `length` bytes, continuing `crc` (0 to start; pass a previous
/// result to checksum data given in pieces). SSE4.2 when the CPU has it (chosen at run time)
/// unless `portable` is nonzero, which forces the table implementation (for tests).
uint32_t cls_crc32c_extend(uint32_t crc, const void *data, size_t length, int portable);
/// 1 when cls_crc32c_extend uses the SSE4.2 instruction, else 0.
int cls_crc32c_hardware(void);

#endif
