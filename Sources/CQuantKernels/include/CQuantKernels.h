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

/// acc[r * CQK_PANEL + p] = sum_k W[block * CQK_ROWS + r][k] * panel(k, p) for r < CQK_ROWS,
/// p < CQK_PANEL (exact s32): one weight block against one panel. `k` is the unpadded depth.
void cqk_block(int path, const void *packed, int block, int k, const void *panel, int32_t *acc);

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

#endif
