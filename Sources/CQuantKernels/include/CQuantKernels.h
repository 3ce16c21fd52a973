// Integer (u8 x s8 -> s32) GEMM kernels for the engine's quantized operators, in C for the
// x86 intrinsics (vpdpbusd, vpmaddwd) Swift cannot name. Each vector path is compiled with a
// function-level target attribute and must only be called when cqk_cpu_path() says the CPU
// runs it. No allocation, no threads: callers own every buffer and split the work.
#ifndef CQUANTKERNELS_H
#define CQUANTKERNELS_H

#include <stddef.h>
#include <stdint.h>

/// Kernel paths. Values are stable (they name the path in the engine's option and errors).
enum {
    CQK_SCALAR = 0,      ///< portable C, any CPU
    CQK_AVX2 = 1,        ///< AVX2: u8/s8 widened to s16, vpmaddwd (exact, no s16 saturation)
    CQK_AVX512VNNI = 2,  ///< AVX-512 F/BW/VL + VNNI: vpdpbusd on 512-bit vectors
};

/// The fastest path this CPU runs.
int cqk_best_path(void);
/// 1 when this CPU runs `path`, else 0.
int cqk_path_supported(int path);

/// Pixels per activation panel (every path), and output channels per weight block.
#define CQK_PANEL 64
#define CQK_ROWS 6

/// Depth granularity of a path's layouts: 4 (u8 groups of 4) or 2 (s16 pairs, AVX2).
int cqk_depth_group(int path);
/// Bytes per panel element: 1 (u8) or 2 (s16, AVX2).
int cqk_panel_element_size(int path);
/// K rounded up to the path's depth group.
static inline int cqk_padded_depth(int path, int k) { int g = cqk_depth_group(path); return (k + g - 1) / g * g; }

/// Bytes of the packed weights of an m x k matrix for `path`.
size_t cqk_packed_weight_bytes(int path, int m, int k);
/// Packs W (m x k, row stride ldw, int8) for `path`: blocks of CQK_ROWS rows, each block
/// [k/G][CQK_ROWS][G]; rows past m and depth past k are zero.
void cqk_pack_weights(int path, const int8_t *w, int ldw, int m, int k, void *packed);

/// Panel layout: element (k, p), p < CQK_PANEL, at ((k / G) * CQK_PANEL + p) * G + k % G, of
/// cqk_panel_element_size bytes; depth padded to the group with zeros. `cqk_panel_bytes`
/// gives the size for depth k.
size_t cqk_panel_bytes(int path, int k);
/// Fills a panel from `count` (<= CQK_PANEL) columns of a row-major u8 matrix B (k x n):
/// rows k0..<k of B at b + row * ldb, columns from b. Columns past `count` are zero.
void cqk_pack_panel(int path, const uint8_t *b, ptrdiff_t ldb, int k, int count, void *panel);
/// Same from gathered rows: row r of the panel is read from rows[r] (count bytes each).
void cqk_pack_panel_rows(int path, const uint8_t *const *rows, int k, int count, void *panel);

/// Gathers the im2col rows of one panel of a 2-D convolution: `rows` (channels * kernel_h *
/// kernel_w rows of CQK_PANEL bytes, row k = (c, i, j)) gets, for output pixels p0..<p0+count
/// (row-major over an out_w-wide output), x[c][oh*stride_h + i*dilation_h - pad_top]
/// [ow*stride_w + j*dilation_w - pad_left] ^ flip, or `pad` outside the image. x is one
/// group's channels, each height x width u8.
void cqk_im2col(const uint8_t *x, int channels, int height, int width, int kernel_h, int kernel_w,
                int stride_h, int stride_w, int dilation_h, int dilation_w, int pad_top, int pad_left,
                int out_w, int p0, int count, uint8_t pad, uint8_t flip, uint8_t *rows);

/// acc[r * CQK_PANEL + p] (+)= sum over k_begin <= q < k_end of W[block * CQK_ROWS + r][q] *
/// panel(q, p) for r < CQK_ROWS, p < CQK_PANEL (exact s32): one weight block against one panel,
/// adding to acc when `accumulate`. `k` is the unpadded depth; k_begin a multiple of 4, k_end
/// a multiple of 4 or >= k (the padded rest is included).
void cqk_block(int path, const void *packed, int block, int k, int k_begin, int k_end, const void *panel,
               int32_t *acc, int accumulate);

/// Epilogue for one block of rows: for r < rows, p < count,
///   v = acc[r][p] + bias[r] - (wzp ? wzp[r] * colsum[p] : 0)
/// u8/s8 output: out[r * ldo + p] = clamp(nearbyint((float)v * scale[r]) + zp, lo, hi)
/// (round half to even, as ONNX); `is_signed` picks s8.
void cqk_requantize(const int32_t *acc, int rows, int count, const int32_t *bias, const int32_t *wzp,
                    const int32_t *colsum, const float *scale, int32_t zp, int32_t lo, int32_t hi,
                    void *out, ptrdiff_t ldo, int is_signed);
/// Same but writes the s32 value v (ConvInteger, MatMulInteger).
void cqk_store_s32(const int32_t *acc, int rows, int count, const int32_t *bias, const int32_t *wzp,
                   const int32_t *colsum, int32_t *out, ptrdiff_t ldo);
/// Same but writes float: out = (float)v * scale[r] + fbias[r] (fbias may be NULL).
void cqk_store_float(const int32_t *acc, int rows, int count, const int32_t *bias, const int32_t *wzp,
                     const int32_t *colsum, const float *scale, const float *fbias, float *out, ptrdiff_t ldo);

/// Depthwise 2-D convolution of one channel (channel multiplier 1): `w` holds the kernel_h x
/// kernel_w weights minus their zero point; x (u8 domain after ^ flip) minus x_zero; sum + bias,
/// then out_kind 0: u8 = clamp(round_even(v * scale) + zp, lo, hi), 2: the same as s8,
/// 1: the s32 sum. `padded` is scratch for the padded plane (s16), `acc` for out_w s32.
void cqk_depthwise(const uint8_t *x, int height, int width, int kernel_h, int kernel_w, int stride_h, int stride_w,
                   int dilation_h, int dilation_w, int pad_top, int pad_left, int out_h, int out_w,
                   uint8_t x_zero, uint8_t flip, const int16_t *w, int32_t bias, float scale, int32_t zp,
                   int32_t lo, int32_t hi, int out_kind, void *out, int16_t *padded, int32_t *acc);

/// out[i] = clamp(round_even(((a[i] - za) * sa  op  (b[i] - zb) * sb) / sc) + zc, lo, hi), op + or *
/// (is_mul), u8 or s8 (is_signed) elements; onnxruntime's QLinearAdd/Mul formula in float.
void cqk_qlinear_add(const uint8_t *a, float sa, int32_t za, const uint8_t *b, float sb, int32_t zb, float sc, int32_t zc,
                     int32_t lo, int32_t hi, int is_signed, int is_mul, uint8_t *out, size_t n);

/// 2-D max pooling of one u8 plane (s8 with flip = 0x80: compared in the u8 domain); every
/// window must hold at least one pixel of the image (padding never wins).
void cqk_maxpool(const uint8_t *x, int height, int width, int kernel_h, int kernel_w, int stride_h, int stride_w,
                 int dilation_h, int dilation_w, int pad_top, int pad_left, int out_h, int out_w, uint8_t flip, uint8_t *out);

/// out[i] = clamp(round_even(x[i] / scale) + zp, lo, hi) as u8 or s8 (is_signed); NaN -> zp
/// (ONNX QuantizeLinear, one scale).
void cqk_quantize(const float *x, size_t n, float scale, int32_t zp, int32_t lo, int32_t hi, int is_signed, void *out);

// ---- channels-last (NHWC) kernels (nhwc.c): u8 activations with contiguous channels ----

/// Output channels per packed weight block, and pixels per register tile, of the NHWC product.
#define CQK_NHWC_COLS 64
#define CQK_NHWC_TILE 6

/// Bytes of an m x k s8 weight matrix packed for `cqk_nhwc_gemm` (every path).
size_t cqk_nhwc_packed_bytes(int m, int k);
/// Packs W (m x k, row stride ldw): blocks of CQK_NHWC_COLS rows, each [k/4][COLS][4] (depth
/// padded to 4 and rows past m zero).
void cqk_nhwc_pack_weights(const int8_t *w, ptrdiff_t ldw, int m, int k, int8_t *packed);
/// For pixels p < `pixels` (u8 rows of k bytes at a + p * lda, read only up to k) and the
/// output channels of weight blocks block_begin..<block_end (channels < m):
///   v = sum_q a[p][q] * W[c][q] + bias[c] - (wzp ? wzp[c] * sum_q a[p][q] : 0)
///   out[p * ldo + c] = clamp(round_even((float)v * scale[c]) + zp, lo, hi) as u8 or s8 (is_signed).
/// `path` picks the integer kernel (CQK_*); no allocation, one thread.
void cqk_nhwc_gemm(int path, const uint8_t *a, ptrdiff_t lda, int pixels, int k, const int8_t *packed, int m,
                   int block_begin, int block_end, const int32_t *bias, const int32_t *wzp, const float *scale,
                   int32_t zp, int32_t lo, int32_t hi, int is_signed, uint8_t *out, ptrdiff_t ldo);
/// The im2col rows of output pixels p0..<p0+count (flat over n, oh, ow of an out_h x out_w
/// output) of a 2-D convolution of x (N x height x width x channels u8): row t at rows + t * ldr
/// holds, for each tap (i, j) in order, the `channels` bytes of the input pixel it reads, or
/// `pad` outside the image; bytes k..<round_up(k, 4) (k = taps * channels) are zeroed.
void cqk_nhwc_im2col(const uint8_t *x, int height, int width, int channels, int kernel_h, int kernel_w,
                     int stride_h, int stride_w, int dilation_h, int dilation_w, int pad_top, int pad_left,
                     int out_h, int out_w, long p0, int count, uint8_t pad, uint8_t *rows, ptrdiff_t ldr);
/// One output row `oh` (out_w pixels x channels, at out) of a depthwise convolution (channel
/// multiplier 1) of one image x (height x width x channels u8):
///   v[c] = bias[c] + sum over taps inside the image of (x - x_zero) * w[tap][c]   (w: s32, taps x channels)
///   out = clamp(round_even(v * scale[c]) + zp, lo, hi), u8 or s8 (is_signed).
/// bias_full[c] = bias[c] - x_zero * (sum of w[tap][c] over every tap), for pixels whose
/// window lies inside the image.
void cqk_nhwc_depthwise_row(int path, const uint8_t *x, int height, int width, int channels, int kernel_h, int kernel_w,
                            int stride_h, int stride_w, int dilation_h, int dilation_w, int pad_top, int pad_left,
                            int oh, int out_w, int32_t x_zero, const int32_t *w, const int32_t *bias,
                            const float *scale, int32_t zp, int32_t lo, int32_t hi, int is_signed, uint8_t *out,
                            const int32_t *bias_full);
/// One output row `oh` of a 2-D max pooling of one NHWC u8 image (s8 with flip = 0x80);
/// every window must hold at least one pixel of the image.
void cqk_nhwc_maxpool_row(const uint8_t *x, int height, int width, int channels, int kernel_h, int kernel_w,
                          int stride_h, int stride_w, int dilation_h, int dilation_w, int pad_top, int pad_left,
                          int oh, int out_w, uint8_t flip, uint8_t *out);

/// One output row `oh` of a 2-D average pooling of one NHWC u8 (or s8, is_signed) image,
/// without ceil_mode: per channel the sum of the window's pixels inside the image minus
/// x_zero each, times scale (x_scale / y_scale) / n (n = kernel_h * kernel_w with
/// count_include_pad, else the pixels inside), requantised with zp, lo, hi. `sum`: channels s32 scratch.
void cqk_nhwc_avgpool_row(const uint8_t *x, int height, int width, int channels, int kernel_h, int kernel_w,
                          int stride_h, int stride_w, int pad_top, int pad_left, int oh, int out_w, int count_include_pad,
                          int32_t x_zero, float scale, int32_t zp, int32_t lo, int32_t hi, int is_signed, int32_t *sum,
                          uint8_t *out);

/// For r < rows: out[r * ldo + i] = table ? table[x[r * ldx + i]] : x[r * ldx + i], i < count
/// (QLinearConcat's rows; the table maps an input's quantized bytes to the output's).
void cqk_copy_rows(const uint8_t *x, ptrdiff_t ldx, int rows, size_t count, const uint8_t *table, uint8_t *out,
                   ptrdiff_t ldo);

#endif
