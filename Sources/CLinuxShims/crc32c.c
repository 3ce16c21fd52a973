// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as leveldb and TensorFlow's
// checkpoints use it. SSE4.2's crc32 instruction when the CPU has it, else slicing-by-8
// tables; the choice is made once, at the first call.
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include "CLinuxShims.h"

static uint32_t table[8][256];

static void build_tables(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
        table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++)
        for (int t = 1; t < 8; t++) table[t][n] = (table[t - 1][n] >> 8) ^ table[0][table[t - 1][n] & 0xff];
}

// `crc` is the running value in its inverted (internal) form.
static uint32_t extend_portable(uint32_t crc, const uint8_t *p, size_t n) {
    while (n && ((uintptr_t)p & 7)) { crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xff]; n--; }
    while (n >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);  // little-endian hosts only (x86-64, aarch64 Linux)
        word ^= crc;
        crc = table[7][word & 0xff] ^ table[6][(word >> 8) & 0xff] ^ table[5][(word >> 16) & 0xff]
            ^ table[4][(word >> 24) & 0xff] ^ table[3][(word >> 32) & 0xff] ^ table[2][(word >> 40) & 0xff]
            ^ table[1][(word >> 48) & 0xff] ^ table[0][word >> 56];
        p += 8; n -= 8;
    }
    while (n--) crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xff];
    return crc;
}

#if defined(__x86_64__)
#include <nmmintrin.h>

// Three independent streams hide the instruction's 3-cycle latency; they are joined by
// multiplying by x^(8*block) mod P (carry-less, through the shift tables built below).
#define BLOCK 4096
static uint32_t shift_block[4][256];  // crc of (byte << 8*i) followed by BLOCK zero bytes

__attribute__((target("sse4.2")))
static uint32_t extend_zeros_hw(uint32_t crc, size_t n) {
    for (; n >= 8; n -= 8) crc = (uint32_t)_mm_crc32_u64(crc, 0);
    for (; n; n--) crc = _mm_crc32_u8(crc, 0);
    return crc;
}

__attribute__((target("sse4.2")))
static void build_shift_table(void) {
    for (int i = 0; i < 4; i++)
        for (uint32_t b = 0; b < 256; b++) shift_block[i][b] = extend_zeros_hw(b << (8 * i), BLOCK);
}

// crc advanced over BLOCK zero bytes (linear in crc: XOR of the four byte contributions).
static inline uint32_t shift(uint32_t crc) {
    return shift_block[0][crc & 0xff] ^ shift_block[1][(crc >> 8) & 0xff] ^ shift_block[2][(crc >> 16) & 0xff]
        ^ shift_block[3][crc >> 24];
}

__attribute__((target("sse4.2")))
static uint32_t extend_hw(uint32_t crc, const uint8_t *p, size_t n) {
    while (n && ((uintptr_t)p & 7)) { crc = _mm_crc32_u8(crc, *p++); n--; }
    while (n >= 3 * BLOCK) {
        uint64_t a = crc, b = 0, c = 0;
        const uint8_t *pa = p, *pb = p + BLOCK, *pc = p + 2 * BLOCK;
        for (size_t i = 0; i < BLOCK; i += 8) {
            uint64_t wa, wb, wc;
            memcpy(&wa, pa + i, 8); memcpy(&wb, pb + i, 8); memcpy(&wc, pc + i, 8);
            a = _mm_crc32_u64(a, wa); b = _mm_crc32_u64(b, wb); c = _mm_crc32_u64(c, wc);
        }
        // crc(A|B|C) = shift(shift(a) ^ b) ^ c, with b and c started from 0.
        crc = shift(shift((uint32_t)a) ^ (uint32_t)b) ^ (uint32_t)c;
        p += 3 * BLOCK; n -= 3 * BLOCK;
    }
    uint64_t c64 = crc;
    for (; n >= 8; n -= 8, p += 8) { uint64_t w; memcpy(&w, p, 8); c64 = _mm_crc32_u64(c64, w); }
    crc = (uint32_t)c64;
    while (n--) crc = _mm_crc32_u8(crc, *p++);
    return crc;
}
#endif

// 1: portable, 2: SSE4.2; set once, by the first caller (pthread_once).
static int implementation;
static pthread_once_t chosen = PTHREAD_ONCE_INIT;

static void choose(void) {
    build_tables();
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2")) {
        build_shift_table();
        implementation = 2;
        return;
    }
#endif
    implementation = 1;
}

uint32_t cls_crc32c_extend(uint32_t crc, const void *data, size_t length, int portable) {
    pthread_once(&chosen, choose);
    uint32_t state = ~crc;
#if defined(__x86_64__)
    if (implementation == 2 && !portable) return ~extend_hw(state, data, length);
#endif
    return ~extend_portable(state, data, length);
}

int cls_crc32c_hardware(void) {
    pthread_once(&chosen, choose);
    return implementation == 2;
}
