// Channels-last (NHWC) quantized kernels: u8 activations whose channels are contiguous per
// pixel, so a 1x1 convolution is a GEMM over the pixel rows as they are and a k x k one needs
// only whole channel runs copied (cqk_nhwc_im2col). Output channels sit in vector lanes: the
// per-channel requantisation is a vector epilogue writing u8/s8 rows directly. See
// CQuantKernels.h for the contracts.
#include "CQuantKernels.h"
#include <immintrin.h>
#include <string.h>

#define VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))
#define AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))
#define AVX2_TARGET __attribute__((target("avx2,fma")))
#define INLINE static inline __attribute__((always_inline))

enum { COLS = CQK_NHWC_COLS, TILE = CQK_NHWC_TILE };

static inline int padded4(int k) { return (k + 3) / 4 * 4; }

size_t cqk_nhwc_packed_bytes(int m, int k) {
    return (size_t)((m + COLS - 1) / COLS) * (size_t)padded4(k) * COLS;
}

void cqk_nhwc_pack_weights(const int8_t *w, ptrdiff_t ldw, int m, int k, int8_t *packed) {
    int kp = padded4(k), blocks = (m + COLS - 1) / COLS;
    for (int b = 0; b < blocks; b++)
        for (int q = 0; q < kp; q++)
            for (int c = 0; c < COLS; c++) {
                int row = b * COLS + c;
                int8_t v = (row < m && q < k) ? w[(size_t)row * ldw + q] : 0;
                packed[((size_t)b * kp + (size_t)(q / 4) * 4) * COLS + (size_t)c * 4 + q % 4] = v;
            }
}

// Four activation bytes of group g of a row as one word; the tail group (k % 4 != 0) reads
// only the bytes that exist (the weights past k are zero, the rest of the word is zero).
INLINE int32_t group_word(const uint8_t *row, int g, int k) {
    int32_t v = 0;
    int have = k - 4 * g;
    memcpy(&v, row + 4 * g, have >= 4 ? 4 : (size_t)have);
    return v;
}

// acc[r][c] = sum_q row_r[q] * W[c][q] over one 64-channel block, r < TILE (rows past the
// caller's count repeat a valid row).
VNNI_TARGET static void tile_vnni(const uint8_t *const *rows, int k, const int8_t *wb, int32_t *acc) {
    __m512i c[TILE][4];
    for (int r = 0; r < TILE; r++)
        for (int j = 0; j < 4; j++) c[r][j] = _mm512_setzero_si512();
    int full = k / 4, groups = (k + 3) / 4;
    const uint8_t *r0 = rows[0], *r1 = rows[1], *r2 = rows[2], *r3 = rows[3], *r4 = rows[4], *r5 = rows[5];
#define CQK_ROW_STEP(R, SRC)                                                                                    \
    do {                                                                                                     \
        __m512i a = _mm512_set1_epi32(SRC);                                                                  \
        c[R][0] = _mm512_dpbusd_epi32(c[R][0], a, w0);                                                       \
        c[R][1] = _mm512_dpbusd_epi32(c[R][1], a, w1);                                                       \
        c[R][2] = _mm512_dpbusd_epi32(c[R][2], a, w2);                                                       \
        c[R][3] = _mm512_dpbusd_epi32(c[R][3], a, w3);                                                       \
    } while (0)
    for (int g = 0; g < full; g++) {
        const int8_t *wg = wb + (size_t)g * 4 * COLS;
        __m512i w0 = _mm512_loadu_si512(wg), w1 = _mm512_loadu_si512(wg + 64);
        __m512i w2 = _mm512_loadu_si512(wg + 128), w3 = _mm512_loadu_si512(wg + 192);
        int32_t v0, v1, v2, v3, v4, v5;
        memcpy(&v0, r0 + 4 * g, 4); memcpy(&v1, r1 + 4 * g, 4); memcpy(&v2, r2 + 4 * g, 4);
        memcpy(&v3, r3 + 4 * g, 4); memcpy(&v4, r4 + 4 * g, 4); memcpy(&v5, r5 + 4 * g, 4);
        CQK_ROW_STEP(0, v0); CQK_ROW_STEP(1, v1); CQK_ROW_STEP(2, v2);
        CQK_ROW_STEP(3, v3); CQK_ROW_STEP(4, v4); CQK_ROW_STEP(5, v5);
    }
    if (groups > full) {
        int g = full;
        const int8_t *wg = wb + (size_t)g * 4 * COLS;
        __m512i w0 = _mm512_loadu_si512(wg), w1 = _mm512_loadu_si512(wg + 64);
        __m512i w2 = _mm512_loadu_si512(wg + 128), w3 = _mm512_loadu_si512(wg + 192);
        CQK_ROW_STEP(0, group_word(r0, g, k)); CQK_ROW_STEP(1, group_word(r1, g, k)); CQK_ROW_STEP(2, group_word(r2, g, k));
        CQK_ROW_STEP(3, group_word(r3, g, k)); CQK_ROW_STEP(4, group_word(r4, g, k)); CQK_ROW_STEP(5, group_word(r5, g, k));
    }
#undef CQK_ROW_STEP
    for (int r = 0; r < TILE; r++)
        for (int j = 0; j < 4; j++) _mm512_storeu_si512(acc + r * COLS + j * 16, c[r][j]);
}

// VNNI tile with the requantisation in registers (no weight zero points): `nv` (1..4, a
// constant after inlining) of the block's four 16-channel vectors hold channels < cols; rows
// r < count are stored. Same arithmetic as epilogue_body: cvtps rounds to nearest even (the
// default MXCSR mode) exactly as round_even_nhwc does for the clamped range.
VNNI_TARGET INLINE void tile_vnni_requantize(int nv, const uint8_t *const *rows, int count, int k, const int8_t *wb,
                                             int cols, const int32_t *bias, const float *scale, int32_t zp, int32_t lo,
                                             int32_t hi, uint8_t *out, ptrdiff_t ldo) {
    __m512i c[TILE][4];
    for (int r = 0; r < TILE; r++)
        for (int j = 0; j < nv; j++) c[r][j] = _mm512_setzero_si512();
    int groups = (k + 3) / 4, full = k / 4;
    for (int g = 0; g < groups; g++) {
        const int8_t *wg = wb + (size_t)g * 4 * COLS;
        __m512i wv[4];
        for (int j = 0; j < nv; j++) wv[j] = _mm512_loadu_si512(wg + 64 * j);
        for (int r = 0; r < TILE; r++) {
            int32_t word;
            if (g < full) memcpy(&word, rows[r] + 4 * g, 4);
            else word = group_word(rows[r], g, k);
            __m512i a = _mm512_set1_epi32(word);
            for (int j = 0; j < nv; j++) c[r][j] = _mm512_dpbusd_epi32(c[r][j], a, wv[j]);
        }
    }
    const __m512 flo = _mm512_set1_ps((float)(lo - zp)), fhi = _mm512_set1_ps((float)(hi - zp));
    const __m512i zpv = _mm512_set1_epi32(zp);
    __mmask16 m[4];
    __m512i b[4];
    __m512 s[4];
    for (int j = 0; j < nv; j++) {
        int rem = cols - 16 * j;
        m[j] = rem >= 16 ? (__mmask16)0xFFFF : rem <= 0 ? (__mmask16)0 : (__mmask16)((1u << rem) - 1);
        b[j] = _mm512_maskz_loadu_epi32(m[j], bias + 16 * j);
        s[j] = _mm512_maskz_loadu_ps(m[j], scale + 16 * j);
    }
    for (int r = 0; r < TILE; r++) {
        if (r >= count) break;
        for (int j = 0; j < nv; j++) {
            __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(c[r][j], b[j])), s[j]);
            f = _mm512_min_ps(_mm512_max_ps(f, flo), fhi);
            __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(f), zpv);
            _mm_mask_storeu_epi8(out + r * ldo + 16 * j, m[j], _mm512_cvtepi32_epi8(q));
        }
    }
}

VNNI_TARGET static void tile_vnni_requantize_any(const uint8_t *const *rows, int count, int k, const int8_t *wb, int cols,
                                                 const int32_t *bias, const float *scale, int32_t zp, int32_t lo,
                                                 int32_t hi, uint8_t *out, ptrdiff_t ldo) {
    int nv = (cols + 15) / 16;
    switch (nv >= 4 ? 4 : nv) {
    case 4: tile_vnni_requantize(4, rows, count, k, wb, cols, bias, scale, zp, lo, hi, out, ldo); break;
    case 3: tile_vnni_requantize(3, rows, count, k, wb, cols, bias, scale, zp, lo, hi, out, ldo); break;
    case 2: tile_vnni_requantize(2, rows, count, k, wb, cols, bias, scale, zp, lo, hi, out, ldo); break;
    default: tile_vnni_requantize(1, rows, count, k, wb, cols, bias, scale, zp, lo, hi, out, ldo); break;
    }
}

// AVX2: exact s16 products (vpmaddwd). Per channel the weight word (q0 q1 q2 q3) splits into
// the s16 pairs (q0, q2) and (q1, q3); the activations into (a0, a2) and (a1, a3), so two
// vpmaddwd give the four-term dot product in the channel's lane. Depth in chunks of groups
// whose activation pairs are prepared once on the stack; 8 channels x TILE rows per pass.
AVX2_TARGET static void tile_avx2(const uint8_t *const *rows, int k, const int8_t *wb, int32_t *acc) {
    enum { CHUNK_GROUPS = 128 };
    int32_t pairs[CHUNK_GROUPS * TILE * 2];
    int groups = (k + 3) / 4;
    for (int i = 0; i < TILE * COLS; i++) acc[i] = 0;
    for (int g0 = 0; g0 < groups; g0 += CHUNK_GROUPS) {
        int g1 = groups - g0 < CHUNK_GROUPS ? groups : g0 + CHUNK_GROUPS;
        for (int g = g0; g < g1; g++)
            for (int r = 0; r < TILE; r++) {
                uint32_t u = (uint32_t)group_word(rows[r], g, k);
                int32_t *pair = pairs + ((g - g0) * TILE + r) * 2;
                pair[0] = (int32_t)((u & 0xFF) | (u >> 16 & 0xFF) << 16);
                pair[1] = (int32_t)((u >> 8 & 0xFF) | (u >> 24) << 16);
            }
        for (int j = 0; j < COLS / 8; j++) {
            __m256i c[TILE];
            for (int r = 0; r < TILE; r++) c[r] = _mm256_loadu_si256((const __m256i *)(acc + r * COLS + j * 8));
            for (int g = g0; g < g1; g++) {
                __m256i w = _mm256_loadu_si256((const __m256i *)(wb + (size_t)g * 4 * COLS + j * 32));
                __m256i even = _mm256_srai_epi16(_mm256_slli_epi16(w, 8), 8), odd = _mm256_srai_epi16(w, 8);
                const int32_t *pair = pairs + (g - g0) * TILE * 2;
                for (int r = 0; r < TILE; r++) {
                    __m256i p = _mm256_madd_epi16(_mm256_set1_epi32(pair[2 * r]), even);
                    __m256i q = _mm256_madd_epi16(_mm256_set1_epi32(pair[2 * r + 1]), odd);
                    c[r] = _mm256_add_epi32(c[r], _mm256_add_epi32(p, q));
                }
            }
            for (int r = 0; r < TILE; r++) _mm256_storeu_si256((__m256i *)(acc + r * COLS + j * 8), c[r]);
        }
    }
}

static void tile_scalar(const uint8_t *const *rows, int k, const int8_t *wb, int32_t *acc) {
    for (int i = 0; i < TILE * COLS; i++) acc[i] = 0;
    int groups = (k + 3) / 4;
    for (int g = 0; g < groups; g++) {
        const int8_t *wg = wb + (size_t)g * 4 * COLS;
        for (int r = 0; r < TILE; r++) {
            uint32_t v = (uint32_t)group_word(rows[r], g, k);
            int32_t a0 = v & 0xFF, a1 = v >> 8 & 0xFF, a2 = v >> 16 & 0xFF, a3 = v >> 24;
            int32_t *o = acc + r * COLS;
            for (int c = 0; c < COLS; c++)
                o[c] += a0 * wg[c * 4] + a1 * wg[c * 4 + 1] + a2 * wg[c * 4 + 2] + a3 * wg[c * 4 + 3];
        }
    }
}

// Round half to even for |f| < 2^22 (callers clamp first), vectorisable.
static inline float round_even_nhwc(float f) {
    const float magic = 12582912.0f;
    return (f + magic) - magic;
}

// out[r * ldo + c] = requantised acc[r][c] + bias[c] - wzp[c] * rowsum[r], r < rows, c < cols.
INLINE void epilogue_body(const int32_t *acc, int rows, int cols, const int32_t *bias, const int32_t *wzp,
                          const int32_t *rowsum, const float *scale, int32_t zp, int32_t lo, int32_t hi,
                          int is_signed, uint8_t *out, ptrdiff_t ldo) {
    float flo = (float)(lo - zp), fhi = (float)(hi - zp);
    for (int r = 0; r < rows; r++) {
        const int32_t *a = acc + r * COLS;
        int32_t s = wzp ? rowsum[r] : 0;
        uint8_t *o = out + r * ldo;
        for (int c = 0; c < cols; c++) {
            int32_t v = a[c] + bias[c] - (wzp ? wzp[c] * s : 0);
            float f = (float)v * scale[c];
            f = f < flo ? flo : f > fhi ? fhi : f;
            int32_t q = (int32_t)round_even_nhwc(f) + zp;
            o[c] = is_signed ? (uint8_t)(int8_t)q : (uint8_t)q;
        }
    }
}

#define CQK_EPILOGUE_ARGS const int32_t *acc, int rows, int cols, const int32_t *bias, const int32_t *wzp, \
    const int32_t *rowsum, const float *scale, int32_t zp, int32_t lo, int32_t hi, int is_signed, uint8_t *out, ptrdiff_t ldo
#define CQK_EPILOGUE_CALL acc, rows, cols, bias, wzp, rowsum, scale, zp, lo, hi, is_signed, out, ldo
AVX512_TARGET static void epilogue_avx512(CQK_EPILOGUE_ARGS) { epilogue_body(CQK_EPILOGUE_CALL); }
AVX2_TARGET static void epilogue_avx2(CQK_EPILOGUE_ARGS) { epilogue_body(CQK_EPILOGUE_CALL); }
static void epilogue_base(CQK_EPILOGUE_ARGS) { epilogue_body(CQK_EPILOGUE_CALL); }

void cqk_nhwc_gemm(int path, const uint8_t *a, ptrdiff_t lda, int pixels, int k, const int8_t *packed, int m,
                   int block_begin, int block_end, const int32_t *bias, const int32_t *wzp, const float *scale,
                   int32_t zp, int32_t lo, int32_t hi, int is_signed, uint8_t *out, ptrdiff_t ldo) {
    int32_t acc[TILE * COLS] __attribute__((aligned(64)));
    int32_t rowsum[TILE];
    size_t block_bytes = (size_t)padded4(k) * COLS;
    for (int p0 = 0; p0 < pixels; p0 += TILE) {
        int count = pixels - p0 < TILE ? pixels - p0 : TILE;
        const uint8_t *rows[TILE];
        for (int r = 0; r < TILE; r++) rows[r] = a + (ptrdiff_t)(p0 + (r < count ? r : count - 1)) * lda;
        if (wzp) {
            for (int r = 0; r < count; r++) {
                int32_t s = 0;
                for (int q = 0; q < k; q++) s += rows[r][q];
                rowsum[r] = s;
            }
        }
        for (int b = block_begin; b < block_end; b++) {
            const int8_t *wb = packed + (size_t)b * block_bytes;
            if (path == CQK_AVX512VNNI && !wzp) {
                int c0 = b * COLS, cols = m - c0 < COLS ? m - c0 : COLS;
                tile_vnni_requantize_any(rows, count, k, wb, cols, bias + c0, scale + c0, zp, lo, hi,
                                         out + (ptrdiff_t)p0 * ldo + c0, ldo);
                continue;
            }
            switch (path) {
            case CQK_AVX512VNNI: tile_vnni(rows, k, wb, acc); break;
            case CQK_AVX2: tile_avx2(rows, k, wb, acc); break;
            default: tile_scalar(rows, k, wb, acc); break;
            }
            int c0 = b * COLS, cols = m - c0 < COLS ? m - c0 : COLS;
            uint8_t *o = out + (ptrdiff_t)p0 * ldo + c0;
            const int32_t *z = wzp ? wzp + c0 : NULL;
            switch (path) {
            case CQK_AVX512VNNI: epilogue_avx512(acc, count, cols, bias + c0, z, rowsum, scale + c0, zp, lo, hi, is_signed, o, ldo); break;
            case CQK_AVX2: epilogue_avx2(acc, count, cols, bias + c0, z, rowsum, scale + c0, zp, lo, hi, is_signed, o, ldo); break;
            default: epilogue_base(acc, count, cols, bias + c0, z, rowsum, scale + c0, zp, lo, hi, is_signed, o, ldo); break;
            }
        }
    }
}

void cqk_nhwc_im2col(const uint8_t *x, int height, int width, int channels, int kernel_h, int kernel_w,
                     int stride_h, int stride_w, int dilation_h, int dilation_w, int pad_top, int pad_left,
                     int out_h, int out_w, long p0, int count, uint8_t pad, uint8_t *rows, ptrdiff_t ldr) {
    int k = kernel_h * kernel_w * channels;
    int ow = (int)(p0 % out_w), oh = (int)(p0 / out_w % out_h);
    long n = p0 / ((long)out_w * out_h);
    for (int t = 0; t < count; t++) {
        if (t > 0 && ++ow == out_w) {
            ow = 0;
            if (++oh == out_h) { oh = 0; n++; }
        }
        const uint8_t *image = x + (size_t)n * height * width * channels;
        uint8_t *row = rows + (ptrdiff_t)t * ldr;
        for (int i = 0; i < kernel_h; i++) {
            int ih = oh * stride_h + i * dilation_h - pad_top;
            int iw0 = ow * stride_w - pad_left;
            if (dilation_w == 1 && ih >= 0 && ih < height && iw0 >= 0 && iw0 + kernel_w <= width) {
                // The kernel row's taps are kernel_w neighbouring pixels: one run of bytes
                // (short runs copied inline: a first layer's 3 x 3 channels).
                uint8_t *dst = row + (size_t)i * kernel_w * channels;
                const uint8_t *src = image + ((size_t)ih * width + iw0) * channels;
                int run = kernel_w * channels;
                if (run < 32) for (int b = 0; b < run; b++) dst[b] = src[b];
                else memcpy(dst, src, (size_t)run);
                continue;
            }
            for (int j = 0; j < kernel_w; j++) {
                int iw = ow * stride_w + j * dilation_w - pad_left;
                uint8_t *dst = row + (size_t)(i * kernel_w + j) * channels;
                int inside = ih >= 0 && ih < height && iw >= 0 && iw < width;
                const uint8_t *src = image + ((size_t)ih * width + iw) * channels;
                if (channels < 16) {
                    // Short runs (a first layer's 3 channels): no call per run.
                    for (int c = 0; c < channels; c++) dst[c] = inside ? src[c] : pad;
                } else if (inside) {
                    memcpy(dst, src, (size_t)channels);
                } else {
                    memset(dst, pad, (size_t)channels);
                }
            }
        }
        for (int q = k; q < ldr && q < padded4(k); q++) row[q] = 0;
    }
}

// ---- depthwise convolution (one channel per group), NHWC ----

INLINE void depthwise_body(const uint8_t *x, int height, int width, int channels, int kernel_h, int kernel_w,
                           int stride_h, int stride_w, int dilation_h, int dilation_w, int pad_top, int pad_left,
                           int oh, int out_w, int32_t x_zero, const int32_t *w, const int32_t *bias,
                           const float *scale, int32_t zp, int32_t lo, int32_t hi, int is_signed, uint8_t *out) {
    float flo = (float)(lo - zp), fhi = (float)(hi - zp);
    // Channels in chunks whose accumulators stay in registers across the taps.
    enum { CHUNK = 64 };
    for (int ow = 0; ow < out_w; ow++) {
        uint8_t *o = out + (size_t)ow * channels;
        for (int c0 = 0; c0 < channels; c0 += CHUNK) {
            int n = channels - c0 < CHUNK ? channels - c0 : CHUNK;
            int32_t sum[CHUNK];
            for (int c = 0; c < CHUNK; c++) sum[c] = c < n ? bias[c0 + c] : 0;
            for (int i = 0; i < kernel_h; i++) {
                int ih = oh * stride_h + i * dilation_h - pad_top;
                if (ih < 0 || ih >= height) continue;
                for (int j = 0; j < kernel_w; j++) {
                    int iw = ow * stride_w + j * dilation_w - pad_left;
                    if (iw < 0 || iw >= width) continue;
                    const uint8_t *px = x + ((size_t)ih * width + iw) * channels + c0;
                    const int32_t *wt = w + (size_t)(i * kernel_w + j) * channels + c0;
                    if (n == CHUNK) {
                        for (int c = 0; c < CHUNK; c++) sum[c] += ((int32_t)px[c] - x_zero) * wt[c];
                    } else {
                        for (int c = 0; c < n; c++) sum[c] += ((int32_t)px[c] - x_zero) * wt[c];
                    }
                }
            }
            for (int c = 0; c < n; c++) {
                float f = (float)sum[c] * scale[c0 + c];
                f = f < flo ? flo : f > fhi ? fhi : f;
                int32_t q = (int32_t)round_even_nhwc(f) + zp;
                o[c0 + c] = is_signed ? (uint8_t)(int8_t)q : (uint8_t)q;
            }
        }
    }
}

#define CQK_DW_ARGS const uint8_t *x, int height, int width, int channels, int kernel_h, int kernel_w, int stride_h, \
    int stride_w, int dilation_h, int dilation_w, int pad_top, int pad_left, int oh, int out_w, int32_t x_zero, \
    const int32_t *w, const int32_t *bias, const float *scale, int32_t zp, int32_t lo, int32_t hi, int is_signed, \
    uint8_t *out
#define CQK_DW_CALL x, height, width, channels, kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w, pad_top, \
    pad_left, oh, out_w, x_zero, w, bias, scale, zp, lo, hi, is_signed, out
AVX512_TARGET static void depthwise_avx512(CQK_DW_ARGS) { depthwise_body(CQK_DW_CALL); }
AVX2_TARGET static void depthwise_avx2(CQK_DW_ARGS) { depthwise_body(CQK_DW_CALL); }
static void depthwise_base(CQK_DW_ARGS) { depthwise_body(CQK_DW_CALL); }

// AVX-512: 16 channels per vector, up to 64 per pass with their accumulators in registers;
// sum x * w and sum w over the taps inside the image, then v = sum - x_zero * sum w (the
// integer the portable body computes). vpmaddwd multiplies (x < 256, w in s16 range).
enum { MAX_TAPS = 64 };

// Masks of the four 16-channel vectors of the 64-channel chunk at c0 (empty past `channels`);
// returns the number of non-empty vectors.
AVX512_TARGET INLINE int chunk_masks_avx512(int channels, int c0, __mmask16 m[4]) {
    int nv = 0;
    for (int k = 0; k < 4; k++) {
        int rem = channels - c0 - 16 * k;
        m[k] = rem >= 16 ? (__mmask16)0xFFFF : rem <= 0 ? (__mmask16)0 : (__mmask16)((1u << rem) - 1);
        if (rem > 0) nv++;
    }
    return nv;
}

// One output pixel, channels c0..<c0 + 16 * nv (masks m for the last vector): sums over the n
// taps (src, wt); `full` (every tap inside, n == all taps) starts from bias_full = bias -
// x_zero * sum w and needs no weight sums.
AVX512_TARGET INLINE void depthwise_pixel_avx512(int nv, const __mmask16 *m, int c0, int n, const uint8_t *const *src,
                                                 const int32_t *const *wt, int full, const int32_t *bias,
                                                 const int32_t *bias_full, const float *scale, __m512i xz, __m512i zpv,
                                                 __m512 flo, __m512 fhi, uint8_t *o) {
    __m512i acc[4], ws[4];
    for (int k = 0; k < nv; k++) {
        acc[k] = _mm512_maskz_loadu_epi32(m[k], (full ? bias_full : bias) + c0 + 16 * k);
        ws[k] = _mm512_setzero_si512();
    }
    for (int t = 0; t < n; t++) {
        for (int k = 0; k < nv; k++) {
            __m512i xv = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m[k], src[t] + c0 + 16 * k));
            __m512i wv = _mm512_maskz_loadu_epi32(m[k], wt[t] + c0 + 16 * k);
            acc[k] = _mm512_add_epi32(acc[k], _mm512_madd_epi16(xv, wv));
            if (!full) ws[k] = _mm512_add_epi32(ws[k], wv);
        }
    }
    for (int k = 0; k < nv; k++) {
        __m512i v = full ? acc[k] : _mm512_sub_epi32(acc[k], _mm512_mullo_epi32(xz, ws[k]));
        __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(v), _mm512_maskz_loadu_ps(m[k], scale + c0 + 16 * k));
        f = _mm512_min_ps(_mm512_max_ps(f, flo), fhi);
        __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(f), zpv);
        _mm_mask_storeu_epi8(o + c0 + 16 * k, m[k], _mm512_cvtepi32_epi8(q));
    }
}

// 16 u8 widened to s32; `masked` (a constant after inlining) reads only the lanes of m.
AVX512_TARGET INLINE __m512i load_u8_lanes(int masked, __mmask16 m, const uint8_t *p) {
    return masked ? _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, p))
                  : _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p));
}
AVX512_TARGET INLINE __m512i load_s32_lanes(int masked, __mmask16 m, const int32_t *p) {
    return masked ? _mm512_maskz_loadu_epi32(m, p) : _mm512_loadu_si512(p);
}

// Four neighbouring output pixels whose windows lie inside the image (pixel p's taps at
// src[t] + p * step): independent accumulator chains, each weight vector loaded once.
AVX512_TARGET INLINE void depthwise_quad_avx512(int nv, int masked, const __mmask16 *m, int c0, int taps, const uint8_t *const *src,
                                                ptrdiff_t step, const int32_t *const *wt, const int32_t *bias_full,
                                                const float *scale, __m512i zpv, __m512 flo, __m512 fhi, uint8_t *o,
                                                int channels) {
    __m512i acc[4][4];
    for (int k = 0; k < nv; k++) {
        __m512i b = _mm512_maskz_loadu_epi32(m[k], bias_full + c0 + 16 * k);
        for (int p = 0; p < 4; p++) acc[p][k] = b;
    }
    for (int t = 0; t < taps; t++) {
        for (int k = 0; k < nv; k++) {
            __m512i wv = load_s32_lanes(masked, m[k], wt[t] + c0 + 16 * k);
            for (int p = 0; p < 4; p++) {
                __m512i xv = load_u8_lanes(masked, m[k], src[t] + p * step + c0 + 16 * k);
                acc[p][k] = _mm512_add_epi32(acc[p][k], _mm512_madd_epi16(xv, wv));
            }
        }
    }
    for (int k = 0; k < nv; k++) {
        __m512 sv = _mm512_maskz_loadu_ps(m[k], scale + c0 + 16 * k);
        for (int p = 0; p < 4; p++) {
            __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(acc[p][k]), sv);
            f = _mm512_min_ps(_mm512_max_ps(f, flo), fhi);
            __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(f), zpv);
            _mm_mask_storeu_epi8(o + (size_t)p * channels + c0 + 16 * k, m[k], _mm512_cvtepi32_epi8(q));
        }
    }
}

// AVX-512: 16 channels per vector, up to 64 per pass with their accumulators in registers;
// sum x * w (vpmaddwd: x < 256, w in s16 range) and, at the border, sum w over the taps
// inside the image, then v = sum - x_zero * sum w (the integer the portable body computes).
AVX512_TARGET static void depthwise_avx512_vectors(CQK_DW_ARGS, const int32_t *bias_full) {
    const __m512 flo = _mm512_set1_ps((float)(lo - zp)), fhi = _mm512_set1_ps((float)(hi - zp));
    const __m512i xz = _mm512_set1_epi32(x_zero), zpv = _mm512_set1_epi32(zp);
    (void)is_signed;  // the low byte of q is the u8 or s8 value alike
    int taps = kernel_h * kernel_w;
    // Output pixels ow_lo..<ow_hi have their windows inside the image columns; with every
    // kernel row inside too they go four at a time.
    int rows_inside = oh * stride_h - pad_top >= 0 && oh * stride_h - pad_top + (kernel_h - 1) * dilation_h < height;
    int ow_lo = (pad_left + stride_w - 1) / stride_w;
    int last = width - 1 - (kernel_w - 1) * dilation_w + pad_left;  // largest ow * stride_w allowed
    int ow_hi = last < 0 ? 0 : last / stride_w + 1;
    if (ow_hi > out_w) ow_hi = out_w;
    for (int ow = 0; ow < out_w; ow++) {
        if (rows_inside && ow >= ow_lo && ow + 4 <= ow_hi) {
            const uint8_t *src[MAX_TAPS];
            const int32_t *wt[MAX_TAPS];
            for (int i = 0, t = 0; i < kernel_h; i++)
                for (int j = 0; j < kernel_w; j++, t++) {
                    int ih = oh * stride_h + i * dilation_h - pad_top, iw = ow * stride_w + j * dilation_w - pad_left;
                    src[t] = x + ((size_t)ih * width + iw) * channels;
                    wt[t] = w + (size_t)t * channels;
                }
            uint8_t *o = out + (size_t)ow * channels;
            ptrdiff_t step = (ptrdiff_t)stride_w * channels;
            for (int c0 = 0; c0 < channels; c0 += 64) {
                __mmask16 m[4];
                int nv = chunk_masks_avx512(channels, c0, m);
#define CQK_DW_QUAD(NV, MASKED) depthwise_quad_avx512(NV, MASKED, m, c0, taps, src, step, wt, bias_full, scale, zpv, flo, fhi, o, channels)
                if (channels - c0 >= 16 * nv) {
                    switch (nv) { case 4: CQK_DW_QUAD(4, 0); break; case 3: CQK_DW_QUAD(3, 0); break;
                                  case 2: CQK_DW_QUAD(2, 0); break; default: CQK_DW_QUAD(1, 0); break; }
                } else {
                    switch (nv) { case 4: CQK_DW_QUAD(4, 1); break; case 3: CQK_DW_QUAD(3, 1); break;
                                  case 2: CQK_DW_QUAD(2, 1); break; default: CQK_DW_QUAD(1, 1); break; }
                }
#undef CQK_DW_QUAD
            }
            ow += 3;
            continue;
        }
        const uint8_t *src[MAX_TAPS];
        const int32_t *wt[MAX_TAPS];
        int n = 0;
        for (int i = 0; i < kernel_h; i++) {
            int ih = oh * stride_h + i * dilation_h - pad_top;
            if (ih < 0 || ih >= height) continue;
            for (int j = 0; j < kernel_w; j++) {
                int iw = ow * stride_w + j * dilation_w - pad_left;
                if (iw < 0 || iw >= width) continue;
                src[n] = x + ((size_t)ih * width + iw) * channels;
                wt[n] = w + (size_t)(i * kernel_w + j) * channels;
                n++;
            }
        }
        int full = n == taps;
        uint8_t *o = out + (size_t)ow * channels;
        for (int c0 = 0; c0 < channels; c0 += 64) {
            __mmask16 m[4];
            int nv = chunk_masks_avx512(channels, c0, m);
#define CQK_DW_PIXEL(NV, FULL) depthwise_pixel_avx512(NV, m, c0, n, src, wt, FULL, bias, bias_full, scale, xz, zpv, flo, fhi, o)
            if (full) {
                switch (nv) { case 4: CQK_DW_PIXEL(4, 1); break; case 3: CQK_DW_PIXEL(3, 1); break;
                              case 2: CQK_DW_PIXEL(2, 1); break; default: CQK_DW_PIXEL(1, 1); break; }
            } else {
                switch (nv) { case 4: CQK_DW_PIXEL(4, 0); break; case 3: CQK_DW_PIXEL(3, 0); break;
                              case 2: CQK_DW_PIXEL(2, 0); break; default: CQK_DW_PIXEL(1, 0); break; }
            }
#undef CQK_DW_PIXEL
        }
    }
}

void cqk_nhwc_depthwise_row(int path, CQK_DW_ARGS, const int32_t *bias_full) {
    switch (path) {
    case CQK_AVX512VNNI:
        if (kernel_h * kernel_w <= MAX_TAPS) depthwise_avx512_vectors(CQK_DW_CALL, bias_full);
        else depthwise_avx512(CQK_DW_CALL);
        break;
    case CQK_AVX2: depthwise_avx2(CQK_DW_CALL); break;
    default: depthwise_base(CQK_DW_CALL); break;
    }
}

// ---- max pooling, NHWC ----

INLINE void maxpool_body(const uint8_t *x, int height, int width, int channels, int kernel_h, int kernel_w,
                         int stride_h, int stride_w, int dilation_h, int dilation_w, int pad_top, int pad_left,
                         int oh, int out_w, uint8_t flip, uint8_t *out) {
    for (int ow = 0; ow < out_w; ow++) {
        uint8_t *o = out + (size_t)ow * channels;
        for (int c = 0; c < channels; c++) o[c] = 0;
        for (int i = 0; i < kernel_h; i++) {
            int ih = oh * stride_h + i * dilation_h - pad_top;
            if (ih < 0 || ih >= height) continue;
            for (int j = 0; j < kernel_w; j++) {
                int iw = ow * stride_w + j * dilation_w - pad_left;
                if (iw < 0 || iw >= width) continue;
                const uint8_t *px = x + ((size_t)ih * width + iw) * channels;
                for (int c = 0; c < channels; c++) {
                    uint8_t v = px[c] ^ flip;
                    o[c] = v > o[c] ? v : o[c];
                }
            }
        }
        for (int c = 0; c < channels; c++) o[c] ^= flip;
    }
}

#define CQK_MP_ARGS const uint8_t *x, int height, int width, int channels, int kernel_h, int kernel_w, int stride_h, \
    int stride_w, int dilation_h, int dilation_w, int pad_top, int pad_left, int oh, int out_w, uint8_t flip, uint8_t *out
#define CQK_MP_CALL x, height, width, channels, kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w, pad_top, \
    pad_left, oh, out_w, flip, out
AVX512_TARGET static void maxpool_avx512(CQK_MP_ARGS) { maxpool_body(CQK_MP_CALL); }
static void maxpool_base(CQK_MP_ARGS) { maxpool_body(CQK_MP_CALL); }

void cqk_nhwc_maxpool_row(CQK_MP_ARGS) {
    static int wide = -1;
    if (wide < 0) wide = cqk_path_supported(CQK_AVX512VNNI);
    if (wide) maxpool_avx512(CQK_MP_CALL); else maxpool_base(CQK_MP_CALL);
}

// ---- average pooling, NHWC ----

INLINE void avgpool_body(const uint8_t *x, int height, int width, int channels, int kernel_h, int kernel_w,
                         int stride_h, int stride_w, int pad_top, int pad_left, int oh, int out_w, int count_include_pad,
                         int32_t x_zero, float scale, int32_t zp, int32_t lo, int32_t hi, int is_signed, int32_t *sum,
                         uint8_t *out) {
    float flo = (float)(lo - zp), fhi = (float)(hi - zp);
    for (int ow = 0; ow < out_w; ow++) {
        for (int c = 0; c < channels; c++) sum[c] = 0;
        int valid = 0;
        for (int i = 0; i < kernel_h; i++) {
            int ih = oh * stride_h + i - pad_top;
            if (ih < 0 || ih >= height) continue;
            for (int j = 0; j < kernel_w; j++) {
                int iw = ow * stride_w + j - pad_left;
                if (iw < 0 || iw >= width) continue;
                const uint8_t *px = x + ((size_t)ih * width + iw) * channels;
                valid++;
                if (is_signed) for (int c = 0; c < channels; c++) sum[c] += (int8_t)px[c];
                else for (int c = 0; c < channels; c++) sum[c] += px[c];
            }
        }
        int n = count_include_pad ? kernel_h * kernel_w : valid;
        float s = scale / (float)(n > 0 ? n : 1);
        int32_t offset = valid * x_zero;
        uint8_t *o = out + (size_t)ow * channels;
        for (int c = 0; c < channels; c++) {
            float f = (float)(sum[c] - offset) * s;
            f = f < flo ? flo : f > fhi ? fhi : f;
            int32_t q = (int32_t)round_even_nhwc(f) + zp;
            o[c] = is_signed ? (uint8_t)(int8_t)q : (uint8_t)q;
        }
    }
}

#define CQK_AP_ARGS const uint8_t *x, int height, int width, int channels, int kernel_h, int kernel_w, int stride_h, \
    int stride_w, int pad_top, int pad_left, int oh, int out_w, int count_include_pad, int32_t x_zero, float scale, \
    int32_t zp, int32_t lo, int32_t hi, int is_signed, int32_t *sum, uint8_t *out
#define CQK_AP_CALL x, height, width, channels, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, oh, out_w, \
    count_include_pad, x_zero, scale, zp, lo, hi, is_signed, sum, out
AVX512_TARGET static void avgpool_avx512(CQK_AP_ARGS) { avgpool_body(CQK_AP_CALL); }
static void avgpool_base(CQK_AP_ARGS) { avgpool_body(CQK_AP_CALL); }

void cqk_nhwc_avgpool_row(CQK_AP_ARGS) {
    static int wide = -1;
    if (wide < 0) wide = cqk_path_supported(CQK_AVX512VNNI);
    if (wide) avgpool_avx512(CQK_AP_CALL); else avgpool_base(CQK_AP_CALL);
}

void cqk_copy_rows(const uint8_t *x, ptrdiff_t ldx, int rows, size_t count, const uint8_t *table, uint8_t *out,
                   ptrdiff_t ldo) {
    for (int r = 0; r < rows; r++) {
        const uint8_t *from = x + (ptrdiff_t)r * ldx;
        uint8_t *to = out + (ptrdiff_t)r * ldo;
        if (!table) { memcpy(to, from, count); continue; }
        for (size_t i = 0; i < count; i++) to[i] = table[from[i]];
    }
}
