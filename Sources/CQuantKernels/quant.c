// Integer GEMM blocks for quantized convolutions and matrix products; see CQuantKernels.h.
#include "CQuantKernels.h"
#include <immintrin.h>
#include <math.h>
#include <string.h>

#define VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))
#define AVX2_TARGET __attribute__((target("avx2,fma")))

int cqk_path_supported(int path) {
    __builtin_cpu_init();
    switch (path) {
    case CQK_SCALAR: return 1;
    case CQK_AVX2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case CQK_AVX512VNNI:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
            && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")
            && __builtin_cpu_supports("avx512vnni");
    default: return 0;
    }
}

int cqk_best_path(void) {
    if (cqk_path_supported(CQK_AVX512VNNI)) return CQK_AVX512VNNI;
    if (cqk_path_supported(CQK_AVX2)) return CQK_AVX2;
    return CQK_SCALAR;
}

static int wide_helpers(void) {
    static int wide = -1;
    if (wide < 0) wide = cqk_path_supported(CQK_AVX512VNNI);
    return wide;
}

int cqk_depth_group(int path) { return path == CQK_AVX2 ? 2 : 4; }
int cqk_panel_element_size(int path) { return path == CQK_AVX2 ? 2 : 1; }

size_t cqk_packed_weight_bytes(int path, int m, int k) {
    size_t blocks = (size_t)(m + CQK_ROWS - 1) / CQK_ROWS;
    return blocks * (size_t)cqk_padded_depth(path, k) * CQK_ROWS * (size_t)cqk_panel_element_size(path);
}

void cqk_pack_weights(int path, const int8_t *w, int ldw, int m, int k, void *packed) {
    int g = cqk_depth_group(path), kp = cqk_padded_depth(path, k);
    int blocks = (m + CQK_ROWS - 1) / CQK_ROWS;
    for (int b = 0; b < blocks; b++) {
        for (int q = 0; q < kp; q++) {
            for (int r = 0; r < CQK_ROWS; r++) {
                int row = b * CQK_ROWS + r;
                int8_t v = (row < m && q < k) ? w[(size_t)row * ldw + q] : 0;
                size_t index = ((size_t)b * kp + (size_t)(q / g) * g) * CQK_ROWS + (size_t)r * g + q % g;
                if (path == CQK_AVX2) ((int16_t *)packed)[index] = v;
                else ((int8_t *)packed)[index] = v;
            }
        }
    }
}

size_t cqk_panel_bytes(int path, int k) {
    return (size_t)cqk_padded_depth(path, k) * CQK_PANEL * (size_t)cqk_panel_element_size(path);
}

// One depth group of rows (4 u8 rows, or 2 for the s16 layout) interleaved into 32-bit words:
// word p = r0[p] | r1[p] << 8 | r2[p] << 16 | r3[p] << 24 (s16: r0[p] | r1[p] << 16).
static inline __attribute__((always_inline)) void pack_group(int path, const uint8_t *r0, const uint8_t *r1, const uint8_t *r2, const uint8_t *r3,
                              int count, uint32_t *dst) {
    if (path == CQK_AVX2) {
        for (int p = 0; p < count; p++) dst[p] = (uint32_t)r0[p] | (uint32_t)r1[p] << 16;
    } else {
        for (int p = 0; p < count; p++)
            dst[p] = (uint32_t)r0[p] | (uint32_t)r1[p] << 8 | (uint32_t)r2[p] << 16 | (uint32_t)r3[p] << 24;
    }
    for (int p = count; p < CQK_PANEL; p++) dst[p] = 0;
}

static const uint8_t zero_row[CQK_PANEL];

static inline __attribute__((always_inline)) void cqk_pack_panel_body(int path, const uint8_t *b, ptrdiff_t ldb, int k, int count, void *panel) {
    int g = cqk_depth_group(path), kp = cqk_padded_depth(path, k);
    for (int q = 0; q < kp; q += g) {
        const uint8_t *r[4];
        for (int j = 0; j < 4; j++) r[j] = (j < g && q + j < k) ? b + (q + j) * ldb : zero_row;
        pack_group(path, r[0], r[1], r[2], r[3], count, (uint32_t *)panel + (size_t)(q / g) * CQK_PANEL);
    }
}

void cqk_pack_panel_rows(int path, const uint8_t *const *rows, int k, int count, void *panel) {
    int g = cqk_depth_group(path), kp = cqk_padded_depth(path, k);
    for (int q = 0; q < kp; q += g) {
        const uint8_t *r[4];
        for (int j = 0; j < 4; j++) r[j] = (j < g && q + j < k) ? rows[q + j] : zero_row;
        pack_group(path, r[0], r[1], r[2], r[3], count, (uint32_t *)panel + (size_t)(q / g) * CQK_PANEL);
    }
}

static inline __attribute__((always_inline)) void cqk_im2col_body(const uint8_t *x, int channels, int height, int width, int kernel_h, int kernel_w,
                int stride_h, int stride_w, int dilation_h, int dilation_w, int pad_top, int pad_left,
                int out_w, int p0, int count, uint8_t pad, uint8_t flip, uint8_t *rows) {
    int k = 0;
    for (int c = 0; c < channels; c++) {
        const uint8_t *plane = x + (size_t)c * height * width;
        for (int i = 0; i < kernel_h; i++) {
            for (int j = 0; j < kernel_w; j++, k++) {
                uint8_t *row = rows + (size_t)k * CQK_PANEL;
                int t = 0, oh = p0 / out_w, ow = p0 % out_w;
                while (t < count) {
                    int run = count - t < out_w - ow ? count - t : out_w - ow;
                    int ih = oh * stride_h + i * dilation_h - pad_top;
                    if (ih < 0 || ih >= height) {
                        memset(row + t, pad, (size_t)run);
                    } else {
                        const uint8_t *line = plane + (size_t)ih * width;
                        int base = j * dilation_w - pad_left;
                        if (stride_w == 1) {
                            // In-bounds columns form one range: copy it, pad the rest.
                            int first = ow + base, r0 = 0, r1 = run;
                            if (first < 0) r0 = -first;
                            if (first + run > width) r1 = width - first;
                            if (r1 < r0) r1 = r0;
                            for (int r = 0; r < r0 && r < run; r++) row[t + r] = pad;
                            for (int r = r0; r < r1; r++) row[t + r] = line[first + r] ^ flip;
                            for (int r = r1 > r0 ? r1 : r0; r < run; r++) row[t + r] = pad;
                        } else {
                            for (int r = 0; r < run; r++) {
                                int iw = (ow + r) * stride_w + base;
                                row[t + r] = (iw >= 0 && iw < width) ? (uint8_t)(line[iw] ^ flip) : pad;
                            }
                        }
                    }
                    t += run;
                    ow = 0;
                    oh++;
                }
            }
        }
    }
}

// ---- blocks ----

static void block_scalar(const int8_t *w, int g0, int g1, const uint8_t *panel, int32_t *acc, int accumulate) {
    if (!accumulate)
        for (int r = 0; r < CQK_ROWS; r++)
            for (int p = 0; p < CQK_PANEL; p++) acc[r * CQK_PANEL + p] = 0;
    for (int q4 = g0; q4 < g1; q4++) {
        const int8_t *wq = w + (size_t)q4 * CQK_ROWS * 4;
        const uint8_t *xq = panel + (size_t)q4 * CQK_PANEL * 4;
        for (int r = 0; r < CQK_ROWS; r++) {
            int32_t w0 = wq[r * 4], w1 = wq[r * 4 + 1], w2 = wq[r * 4 + 2], w3 = wq[r * 4 + 3];
            int32_t *a = acc + r * CQK_PANEL;
            for (int p = 0; p < CQK_PANEL; p++) {
                const uint8_t *x = xq + p * 4;
                a[p] += x[0] * w0 + x[1] * w1 + x[2] * w2 + x[3] * w3;
            }
        }
    }
}

VNNI_TARGET static void block_vnni(const int8_t *w, int g0, int g1, const uint8_t *panel, int32_t *acc, int accumulate) {
    // 6 rows x 64 pixels: 24 accumulators; per depth group 4 panel loads and 6 broadcasts.
    __m512i c[CQK_ROWS][4];
    for (int r = 0; r < CQK_ROWS; r++)
        for (int j = 0; j < 4; j++)
            c[r][j] = accumulate ? _mm512_loadu_si512(acc + r * CQK_PANEL + j * 16) : _mm512_setzero_si512();
    for (int q4 = g0; q4 < g1; q4++) {
        const uint8_t *xq = panel + (size_t)q4 * CQK_PANEL * 4;
        const int32_t *wq = (const int32_t *)(w + (size_t)q4 * CQK_ROWS * 4);
        __m512i x0 = _mm512_loadu_si512(xq), x1 = _mm512_loadu_si512(xq + 64);
        __m512i x2 = _mm512_loadu_si512(xq + 128), x3 = _mm512_loadu_si512(xq + 192);
        for (int r = 0; r < CQK_ROWS; r++) {
            __m512i wv = _mm512_set1_epi32(wq[r]);
            c[r][0] = _mm512_dpbusd_epi32(c[r][0], x0, wv);
            c[r][1] = _mm512_dpbusd_epi32(c[r][1], x1, wv);
            c[r][2] = _mm512_dpbusd_epi32(c[r][2], x2, wv);
            c[r][3] = _mm512_dpbusd_epi32(c[r][3], x3, wv);
        }
    }
    for (int r = 0; r < CQK_ROWS; r++)
        for (int j = 0; j < 4; j++) _mm512_storeu_si512(acc + r * CQK_PANEL + j * 16, c[r][j]);
}

AVX2_TARGET static void block_avx2(const int16_t *w, int g0, int g1, const int16_t *panel, int32_t *acc, int accumulate) {
    // s16 pairs: vpmaddwd of (x_k, x_k+1) with (w_k, w_k+1) is exact in s32 (|x w| < 2^15 each).
    // 6 rows x 16 pixels per pass: 12 accumulators, 2 panel loads, 1 broadcast.
    for (int part = 0; part < CQK_PANEL / 16; part++) {
        __m256i c[CQK_ROWS][2];
        for (int r = 0; r < CQK_ROWS; r++) {
            if (accumulate) {
                c[r][0] = _mm256_loadu_si256((const __m256i *)(acc + r * CQK_PANEL + part * 16));
                c[r][1] = _mm256_loadu_si256((const __m256i *)(acc + r * CQK_PANEL + part * 16 + 8));
            } else {
                c[r][0] = c[r][1] = _mm256_setzero_si256();
            }
        }
        for (int q2 = g0; q2 < g1; q2++) {
            const int16_t *xq = panel + ((size_t)q2 * CQK_PANEL + part * 16) * 2;
            const int32_t *wq = (const int32_t *)(w + (size_t)q2 * CQK_ROWS * 2);
            __m256i x0 = _mm256_loadu_si256((const __m256i *)xq), x1 = _mm256_loadu_si256((const __m256i *)(xq + 16));
            for (int r = 0; r < CQK_ROWS; r++) {
                __m256i wv = _mm256_set1_epi32(wq[r]);
                c[r][0] = _mm256_add_epi32(c[r][0], _mm256_madd_epi16(x0, wv));
                c[r][1] = _mm256_add_epi32(c[r][1], _mm256_madd_epi16(x1, wv));
            }
        }
        for (int r = 0; r < CQK_ROWS; r++) {
            _mm256_storeu_si256((__m256i *)(acc + r * CQK_PANEL + part * 16), c[r][0]);
            _mm256_storeu_si256((__m256i *)(acc + r * CQK_PANEL + part * 16 + 8), c[r][1]);
        }
    }
}

void cqk_block(int path, const void *packed, int block, int k, int k_begin, int k_end, const void *panel,
               int32_t *acc, int accumulate) {
    int g = cqk_depth_group(path), kp = cqk_padded_depth(path, k);
    int g0 = k_begin / g, g1 = (k_end >= k ? kp : k_end) / g;
    size_t offset = (size_t)block * kp * CQK_ROWS;
    switch (path) {
    case CQK_AVX512VNNI: block_vnni((const int8_t *)packed + offset, g0, g1, panel, acc, accumulate); break;
    case CQK_AVX2: block_avx2((const int16_t *)packed + offset, g0, g1, panel, acc, accumulate); break;
    default: block_scalar((const int8_t *)packed + offset, g0, g1, panel, acc, accumulate); break;
    }
}

// ---- epilogues and data movement: portable C the compiler vectorises, built twice (baseline
// and AVX-512) and dispatched on the CPU; independent of the GEMM path in force ----



// Round half to even for |f| < 2^22 (callers clamp to the quantized range first): adding and
// subtracting 1.5 * 2^23 leaves the integer the default rounding mode (to nearest, ties to even)
// picks. Vectorisable, unlike a call to nearbyintf.
static inline float round_even(float f) {
    const float magic = 12582912.0f;
    return (f + magic) - magic;
}

static inline __attribute__((always_inline)) void cqk_requantize_body(const int32_t *acc, int rows, int count, const int32_t *bias, const int32_t *wzp,
                    const int32_t *colsum, const float *scale, int32_t zp, int32_t lo, int32_t hi,
                    void *out, ptrdiff_t ldo, int is_signed) {
    for (int r = 0; r < rows; r++) {
        const int32_t *a = acc + r * CQK_PANEL;
        int32_t b = bias ? bias[r] : 0, z = wzp ? wzp[r] : 0;
        float s = scale[r];
        float flo = (float)(lo - zp), fhi = (float)(hi - zp);
        if (is_signed) {
            int8_t *o = (int8_t *)out + r * ldo;
            for (int p = 0; p < count; p++) {
                int32_t v = a[p] + b - (colsum ? z * colsum[p] : 0);
                float f = (float)v * s;
                f = f < flo ? flo : f > fhi ? fhi : f;
                o[p] = (int8_t)((int32_t)round_even(f) + zp);
            }
        } else {
            uint8_t *o = (uint8_t *)out + r * ldo;
            for (int p = 0; p < count; p++) {
                int32_t v = a[p] + b - (colsum ? z * colsum[p] : 0);
                float f = (float)v * s;
                f = f < flo ? flo : f > fhi ? fhi : f;
                o[p] = (uint8_t)((int32_t)round_even(f) + zp);
            }
        }
    }
}

void cqk_store_s32(const int32_t *acc, int rows, int count, const int32_t *bias, const int32_t *wzp,
                   const int32_t *colsum, int32_t *out, ptrdiff_t ldo) {
    for (int r = 0; r < rows; r++) {
        const int32_t *a = acc + r * CQK_PANEL;
        int32_t b = bias ? bias[r] : 0, z = wzp ? wzp[r] : 0;
        for (int p = 0; p < count; p++) out[r * ldo + p] = a[p] + b - (colsum ? z * colsum[p] : 0);
    }
}

void cqk_store_float(const int32_t *acc, int rows, int count, const int32_t *bias, const int32_t *wzp,
                     const int32_t *colsum, const float *scale, const float *fbias, float *out, ptrdiff_t ldo) {
    for (int r = 0; r < rows; r++) {
        const int32_t *a = acc + r * CQK_PANEL;
        int32_t b = bias ? bias[r] : 0, z = wzp ? wzp[r] : 0;
        float s = scale[r], fb = fbias ? fbias[r] : 0.0f;
        for (int p = 0; p < count; p++) out[r * ldo + p] = (float)(a[p] + b - (colsum ? z * colsum[p] : 0)) * s + fb;
    }
}

// ---- depthwise convolution and element-wise kernels (portable C, vectorised by the compiler) ----

static inline __attribute__((always_inline)) void cqk_depthwise_body(const uint8_t *x, int height, int width, int kernel_h, int kernel_w, int stride_h, int stride_w,
                   int dilation_h, int dilation_w, int pad_top, int pad_left, int out_h, int out_w,
                   uint8_t x_zero, uint8_t flip, const int16_t *w, int32_t bias, float scale, int32_t zp,
                   int32_t lo, int32_t hi, int out_kind, void *out, int16_t *padded, int32_t *acc) {
    int ph = (out_h - 1) * stride_h + (kernel_h - 1) * dilation_h + 1;
    int pw = (out_w - 1) * stride_w + (kernel_w - 1) * dilation_w + 1;
    for (int y = 0; y < ph; y++) {
        int iy = y - pad_top;
        int16_t *row = padded + (size_t)y * pw;
        if (iy < 0 || iy >= height) { for (int xx = 0; xx < pw; xx++) row[xx] = 0; continue; }
        const uint8_t *line = x + (size_t)iy * width;
        for (int xx = 0; xx < pw; xx++) {
            int ix = xx - pad_left;
            row[xx] = (ix >= 0 && ix < width) ? (int16_t)((line[ix] ^ flip) - x_zero) : 0;
        }
    }
    float flo = (float)(lo - zp), fhi = (float)(hi - zp);
    for (int oh = 0; oh < out_h; oh++) {
        for (int ow = 0; ow < out_w; ow++) acc[ow] = bias;
        for (int i = 0; i < kernel_h; i++) {
            const int16_t *row = padded + (size_t)(oh * stride_h + i * dilation_h) * pw;
            for (int j = 0; j < kernel_w; j++) {
                int32_t wv = w[i * kernel_w + j];
                const int16_t *src = row + j * dilation_w;
                if (stride_w == 1) {
                    for (int ow = 0; ow < out_w; ow++) acc[ow] += wv * src[ow];
                } else {
                    for (int ow = 0; ow < out_w; ow++) acc[ow] += wv * src[ow * stride_w];
                }
            }
        }
        if (out_kind == 1) {
            int32_t *o = (int32_t *)out + (size_t)oh * out_w;
            for (int ow = 0; ow < out_w; ow++) o[ow] = acc[ow];
        } else {
            for (int ow = 0; ow < out_w; ow++) {
                float f = (float)acc[ow] * scale;
                f = f < flo ? flo : f > fhi ? fhi : f;
                int32_t q = (int32_t)round_even(f) + zp;
                if (out_kind == 2) ((int8_t *)out)[(size_t)oh * out_w + ow] = (int8_t)q;
                else ((uint8_t *)out)[(size_t)oh * out_w + ow] = (uint8_t)q;
            }
        }
    }
}

static inline __attribute__((always_inline)) void cqk_qlinear_add_body(const uint8_t *a, float sa, int32_t za, const uint8_t *b, float sb, int32_t zb, float sc, int32_t zc,
                     int32_t lo, int32_t hi, int is_signed, int is_mul, uint8_t *out, size_t n) {
    float flo = (float)(lo - zc), fhi = (float)(hi - zc);
    if (is_signed) {
        const int8_t *sa8 = (const int8_t *)a, *sb8 = (const int8_t *)b;
        for (size_t i = 0; i < n; i++) {
            float x = sa * (float)(sa8[i] - za), y = sb * (float)(sb8[i] - zb);
            float f = (is_mul ? x * y : x + y) / sc;
            f = f < flo ? flo : f > fhi ? fhi : f;
            ((int8_t *)out)[i] = (int8_t)((int32_t)round_even(f) + zc);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            float x = sa * (float)(a[i] - za), y = sb * (float)(b[i] - zb);
            float f = (is_mul ? x * y : x + y) / sc;
            f = f < flo ? flo : f > fhi ? fhi : f;
            out[i] = (uint8_t)((int32_t)round_even(f) + zc);
        }
    }
}

VNNI_TARGET static void cqk_requantize_avx512(const int32_t *acc, int rows, int count, const int32_t *bias, const int32_t *wzp, const int32_t *colsum, const float *scale, int32_t zp, int32_t lo, int32_t hi, void *out, ptrdiff_t ldo, int is_signed) { cqk_requantize_body(acc, rows, count, bias, wzp, colsum, scale, zp, lo, hi, out, ldo, is_signed); }
static void cqk_requantize_base(const int32_t *acc, int rows, int count, const int32_t *bias, const int32_t *wzp, const int32_t *colsum, const float *scale, int32_t zp, int32_t lo, int32_t hi, void *out, ptrdiff_t ldo, int is_signed) { cqk_requantize_body(acc, rows, count, bias, wzp, colsum, scale, zp, lo, hi, out, ldo, is_signed); }
void cqk_requantize(const int32_t *acc, int rows, int count, const int32_t *bias, const int32_t *wzp, const int32_t *colsum, const float *scale, int32_t zp, int32_t lo, int32_t hi, void *out, ptrdiff_t ldo, int is_signed) {
    if (wide_helpers()) cqk_requantize_avx512(acc, rows, count, bias, wzp, colsum, scale, zp, lo, hi, out, ldo, is_signed); else cqk_requantize_base(acc, rows, count, bias, wzp, colsum, scale, zp, lo, hi, out, ldo, is_signed);
}

VNNI_TARGET static void cqk_im2col_avx512(const uint8_t *x, int channels, int height, int width, int kernel_h, int kernel_w, int stride_h, int stride_w, int dilation_h, int dilation_w, int pad_top, int pad_left, int out_w, int p0, int count, uint8_t pad, uint8_t flip, uint8_t *rows) { cqk_im2col_body(x, channels, height, width, kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w, pad_top, pad_left, out_w, p0, count, pad, flip, rows); }
static void cqk_im2col_base(const uint8_t *x, int channels, int height, int width, int kernel_h, int kernel_w, int stride_h, int stride_w, int dilation_h, int dilation_w, int pad_top, int pad_left, int out_w, int p0, int count, uint8_t pad, uint8_t flip, uint8_t *rows) { cqk_im2col_body(x, channels, height, width, kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w, pad_top, pad_left, out_w, p0, count, pad, flip, rows); }
void cqk_im2col(const uint8_t *x, int channels, int height, int width, int kernel_h, int kernel_w, int stride_h, int stride_w, int dilation_h, int dilation_w, int pad_top, int pad_left, int out_w, int p0, int count, uint8_t pad, uint8_t flip, uint8_t *rows) {
    if (wide_helpers()) cqk_im2col_avx512(x, channels, height, width, kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w, pad_top, pad_left, out_w, p0, count, pad, flip, rows); else cqk_im2col_base(x, channels, height, width, kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w, pad_top, pad_left, out_w, p0, count, pad, flip, rows);
}

VNNI_TARGET static void cqk_pack_panel_avx512(int path, const uint8_t *b, ptrdiff_t ldb, int k, int count, void *panel) { cqk_pack_panel_body(path, b, ldb, k, count, panel); }
static void cqk_pack_panel_base(int path, const uint8_t *b, ptrdiff_t ldb, int k, int count, void *panel) { cqk_pack_panel_body(path, b, ldb, k, count, panel); }
void cqk_pack_panel(int path, const uint8_t *b, ptrdiff_t ldb, int k, int count, void *panel) {
    if (wide_helpers()) cqk_pack_panel_avx512(path, b, ldb, k, count, panel); else cqk_pack_panel_base(path, b, ldb, k, count, panel);
}

VNNI_TARGET static void cqk_depthwise_avx512(const uint8_t *x, int height, int width, int kernel_h, int kernel_w, int stride_h, int stride_w, int dilation_h, int dilation_w, int pad_top, int pad_left, int out_h, int out_w, uint8_t x_zero, uint8_t flip, const int16_t *w, int32_t bias, float scale, int32_t zp, int32_t lo, int32_t hi, int out_kind, void *out, int16_t *padded, int32_t *acc) { cqk_depthwise_body(x, height, width, kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w, pad_top, pad_left, out_h, out_w, x_zero, flip, w, bias, scale, zp, lo, hi, out_kind, out, padded, acc); }
static void cqk_depthwise_base(const uint8_t *x, int height, int width, int kernel_h, int kernel_w, int stride_h, int stride_w, int dilation_h, int dilation_w, int pad_top, int pad_left, int out_h, int out_w, uint8_t x_zero, uint8_t flip, const int16_t *w, int32_t bias, float scale, int32_t zp, int32_t lo, int32_t hi, int out_kind, void *out, int16_t *padded, int32_t *acc) { cqk_depthwise_body(x, height, width, kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w, pad_top, pad_left, out_h, out_w, x_zero, flip, w, bias, scale, zp, lo, hi, out_kind, out, padded, acc); }
void cqk_depthwise(const uint8_t *x, int height, int width, int kernel_h, int kernel_w, int stride_h, int stride_w, int dilation_h, int dilation_w, int pad_top, int pad_left, int out_h, int out_w, uint8_t x_zero, uint8_t flip, const int16_t *w, int32_t bias, float scale, int32_t zp, int32_t lo, int32_t hi, int out_kind, void *out, int16_t *padded, int32_t *acc) {
    if (wide_helpers()) cqk_depthwise_avx512(x, height, width, kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w, pad_top, pad_left, out_h, out_w, x_zero, flip, w, bias, scale, zp, lo, hi, out_kind, out, padded, acc); else cqk_depthwise_base(x, height, width, kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w, pad_top, pad_left, out_h, out_w, x_zero, flip, w, bias, scale, zp, lo, hi, out_kind, out, padded, acc);
}

VNNI_TARGET static void cqk_qlinear_add_avx512(const uint8_t *a, float sa, int32_t za, const uint8_t *b, float sb, int32_t zb, float sc, int32_t zc, int32_t lo, int32_t hi, int is_signed, int is_mul, uint8_t *out, size_t n) { cqk_qlinear_add_body(a, sa, za, b, sb, zb, sc, zc, lo, hi, is_signed, is_mul, out, n); }
static void cqk_qlinear_add_base(const uint8_t *a, float sa, int32_t za, const uint8_t *b, float sb, int32_t zb, float sc, int32_t zc, int32_t lo, int32_t hi, int is_signed, int is_mul, uint8_t *out, size_t n) { cqk_qlinear_add_body(a, sa, za, b, sb, zb, sc, zc, lo, hi, is_signed, is_mul, out, n); }
void cqk_qlinear_add(const uint8_t *a, float sa, int32_t za, const uint8_t *b, float sb, int32_t zb, float sc, int32_t zc, int32_t lo, int32_t hi, int is_signed, int is_mul, uint8_t *out, size_t n) {
    if (wide_helpers()) cqk_qlinear_add_avx512(a, sa, za, b, sb, zb, sc, zc, lo, hi, is_signed, is_mul, out, n); else cqk_qlinear_add_base(a, sa, za, b, sb, zb, sc, zc, lo, hi, is_signed, is_mul, out, n);
}

static inline __attribute__((always_inline)) void cqk_maxpool_body(const uint8_t *x, int height, int width, int kernel_h, int kernel_w,
        int stride_h, int stride_w, int dilation_h, int dilation_w, int pad_top, int pad_left, int out_h, int out_w,
        uint8_t flip, uint8_t *out) {
    for (int oh = 0; oh < out_h; oh++) {
        uint8_t *o = out + (size_t)oh * out_w;
        for (int ow = 0; ow < out_w; ow++) o[ow] = 0;
        for (int i = 0; i < kernel_h; i++) {
            int ih = oh * stride_h + i * dilation_h - pad_top;
            if (ih < 0 || ih >= height) continue;
            const uint8_t *line = x + (size_t)ih * width;
            for (int j = 0; j < kernel_w; j++) {
                int base = j * dilation_w - pad_left;
                for (int ow = 0; ow < out_w; ow++) {
                    int iw = ow * stride_w + base;
                    uint8_t v = (iw >= 0 && iw < width) ? (uint8_t)(line[iw] ^ flip) : 0;
                    o[ow] = v > o[ow] ? v : o[ow];
                }
            }
        }
        for (int ow = 0; ow < out_w; ow++) o[ow] ^= flip;
    }
}

VNNI_TARGET static void cqk_maxpool_avx512(const uint8_t *x, int height, int width, int kernel_h, int kernel_w, int stride_h, int stride_w, int dilation_h, int dilation_w, int pad_top, int pad_left, int out_h, int out_w, uint8_t flip, uint8_t *out) { cqk_maxpool_body(x, height, width, kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w, pad_top, pad_left, out_h, out_w, flip, out); }
static void cqk_maxpool_base(const uint8_t *x, int height, int width, int kernel_h, int kernel_w, int stride_h, int stride_w, int dilation_h, int dilation_w, int pad_top, int pad_left, int out_h, int out_w, uint8_t flip, uint8_t *out) { cqk_maxpool_body(x, height, width, kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w, pad_top, pad_left, out_h, out_w, flip, out); }
void cqk_maxpool(const uint8_t *x, int height, int width, int kernel_h, int kernel_w, int stride_h, int stride_w, int dilation_h, int dilation_w, int pad_top, int pad_left, int out_h, int out_w, uint8_t flip, uint8_t *out) {
    if (wide_helpers()) cqk_maxpool_avx512(x, height, width, kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w, pad_top, pad_left, out_h, out_w, flip, out); else cqk_maxpool_base(x, height, width, kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w, pad_top, pad_left, out_h, out_w, flip, out);
}

static inline __attribute__((always_inline)) void cqk_quantize_body(const float *x, size_t n, float scale, int32_t zp, int32_t lo, int32_t hi,
                                                                    int is_signed, void *out) {
    float flo = (float)(lo - zp), fhi = (float)(hi - zp);
    for (size_t i = 0; i < n; i++) {
        float f = x[i] / scale;
        f = f < flo ? flo : f > fhi ? fhi : f;   // NaN stays NaN here; see below
        f = f == f ? f : 0.0f;
        int32_t q = (int32_t)round_even(f) + zp;
        if (is_signed) ((int8_t *)out)[i] = (int8_t)q; else ((uint8_t *)out)[i] = (uint8_t)q;
    }
}

VNNI_TARGET static void cqk_quantize_avx512(const float *x, size_t n, float scale, int32_t zp, int32_t lo, int32_t hi, int is_signed, void *out) { cqk_quantize_body(x, n, scale, zp, lo, hi, is_signed, out); }
static void cqk_quantize_base(const float *x, size_t n, float scale, int32_t zp, int32_t lo, int32_t hi, int is_signed, void *out) { cqk_quantize_body(x, n, scale, zp, lo, hi, is_signed, out); }
void cqk_quantize(const float *x, size_t n, float scale, int32_t zp, int32_t lo, int32_t hi, int is_signed, void *out) {
    if (wide_helpers()) cqk_quantize_avx512(x, n, scale, zp, lo, hi, is_signed, out); else cqk_quantize_base(x, n, scale, zp, lo, hi, is_signed, out);
}
