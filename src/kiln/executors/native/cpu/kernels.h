// CPU kernels of the native runtime: matrix multiply over weights as stored (f32, bf16, f16, or
// GGUF's Q8_0, Q4_0 and Q4_1 blocks; repacked at load), with activations quantized
// once per row to 8-bit blocks for the quantized formats, as llama.cpp's CPU path does.
//
// Every kernel has a portable C++ path and an AVX2+FMA path, picked at run time (features.h).
// Batch invariance is a contract, not an accident: each output element Y[m, n] is computed by the
// same sequence of floating-point operations whatever the number of rows m, the thread count and
// the position of the row in the batch. That sequence is one definition per weight type (MatMul's
// below) that every path follows, so the paths agree bit for bit too; the attention kernels may
// differ between paths, never within one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "kiln/executors/native/cpu/features.h"
#include "kiln/executors/native/cpu/thread_pool.h"

namespace kiln::native::cpu {

// Weight layouts. The quantized ones are GGUF's, byte for byte: a row of `cols` weights is
// cols / 32 blocks.
//   Q8_0: {fp16 d; int8 q[32]}            w = d * q
//   Q4_0: {fp16 d; uint8 qs[16]}          w = d * (nibble - 8)
//   Q4_1: {fp16 d; fp16 m; uint8 qs[16]}  w = d * nibble + m
// where element j < 16 of a block is the low nibble of qs[j] and element j + 16 its high nibble.
// The float types F32, BF16 and F16 are a row of `cols` values (cols even); the kernels widen
// the 16-bit ones to f32 exactly as they read them.
enum class WeightType { kF32, kQ8_0, kQ4_0, kQ4_1, kBF16, kF16 };
const char* WeightTypeName(WeightType type);
// Bytes of one row of `cols` weights (cols a multiple of 32 for the block types, even for the
// float ones).
size_t RowBytes(WeightType type, int64_t cols);
bool IsFloatType(WeightType type);  // kF32, kBF16 or kF16
// Bytes of one stored weight of a float type.
constexpr int FloatTypeBytes(WeightType type) { return type == WeightType::kF32 ? 4 : 2; }

// A [rows, cols] weight matrix: row n holds the weights of output n. Not owned, packed
// (PackWeights).
struct WeightMatrix {
  WeightType type = WeightType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  const uint8_t* data = nullptr;
};

// The packed layout of a quantized matrix: rows go in groups of 8 (the last one padded with zero
// weights), each group its cols / 32 block records in order, one record holding a block of 32
// weights of each of the group's 8 rows:
//   Q8_0: fp16 d[8], then 8 vectors of 32 bytes; vector v holds weights 4v..4v+3 of row 0, then
//         of row 1, ..., of row 7 (int8);
//   Q4_0: fp16 d[8], then 4 vectors of 32 bytes; byte 4r + t of vector v holds weight 4v + t of
//         row r in its low nibble and weight 16 + 4v + t in its high nibble;
//   Q4_1: fp16 d[8], fp16 m[8], then Q4_0's 4 vectors.
// One 32-byte load then feeds 8 outputs at once (a vector multiply-add against 4 activation
// bytes broadcast), with the same bytes per weight as the file.
// The float types: the group's weights k and k + 1 (k even) of its 8 rows make one record of 16
// values, row 0's pair first, then row 1's, ...; records follow in k order. One record, widened,
// then takes a multiply-add against the activations k and k + 1 broadcast as a pair, and
// advances two running sums (even k, odd k) of each of the 8 outputs.
constexpr int kPackRows = 8;
size_t PackedBytes(WeightType type, int64_t rows, int64_t cols);
// Packs `rows` rows of `cols` weights in the stored layout (GGUF's blocks, or plain values;
// RowBytes apart) into `out` (PackedBytes).
void PackWeights(WeightType type, int64_t rows, int64_t cols, const uint8_t* gguf_rows,
                 uint8_t* out);
// Quantizes `rows` f32 rows of `cols` weights (cols a multiple of 32) to int8 per output channel,
// written as GGUF Q8_0 rows (RowBytes apart) for PackWeights: every block of a row has the row's
// scale d = fp16(max |w| / 127), and q = round(w / d) (half away from zero), kept within +-127.
void QuantizeRowsInt8(const float* w, int64_t rows, int64_t cols, uint8_t* q8_0_rows);
// Row n of a packed matrix back in the stored layout (RowBytes(w.type, w.cols) bytes).
void UnpackRow(const WeightMatrix& w, int64_t n, uint8_t* gguf_row);

// 32 activations quantized to 8 bits: x ~= d * q, with qsum = q[0] + ... + q[31] (for Q4_0's
// offset of 8) and sum = d * qsum (for Q4_1's offset term), as ggml's block_q8_1 with f32 d.
struct BlockQ8 {
  float d;
  float sum;
  int32_t qsum;
  int8_t q[32];
};

// The packed quantized multiply's rows per panel (kernels_avx2_body.inc, kernels_avx512.cc): as
// many rows of `blocks` blocks as fit in 16 KB, so that they stay in L1 while every group of
// the thread's columns meets them, rounded down to a multiple of the kernel's tile rows (at
// least one tile). Without panels a 512-row prompt's activations (405 KB at k = 576) came from
// L2 once for every group.
constexpr int64_t PanelRows(int64_t blocks, int64_t tile_rows) {
  const int64_t fit = 16384 / (blocks * static_cast<int64_t>(sizeof(BlockQ8)));
  return fit < tile_rows ? tile_rows : fit / tile_rows * tile_rows;
}

// Quantizes k values (k a multiple of 32) to k / 32 blocks: d = max|x| / 127, q = round(x / d)
// (round half away from zero, as ggml does).
void QuantizeRowQ8(Isa isa, const float* x, int64_t k, BlockQ8* out);

// Attention's softmax numerator: x[i] = exp(x[i] - max) for i in [0, n), with max >= every
// x[i]; returns their sum. The exponential is a polynomial (relative error about 2e-7), the same
// for every element whatever n or its index, and the sum's order depends on n only.
float ExpSubMaxSum(Isa isa, float* x, int64_t n, float max);
// SwiGLU's product: gate[i] = silu(gate[i]) * up[i] = gate[i] / (1 + exp(-gate[i])) * up[i],
// for i in [0, n); each element the same operations whatever n or its index.
void SiluMul(Isa isa, float* gate, const float* up, int64_t n);
// GeGLU's product with transformers' gelu_pytorch_tanh: gate[i] = gelu_tanh(gate[i]) * up[i],
// gelu_tanh(g) = 0.5 g (1 + tanh(u)) = g / (1 + exp(-2u)), u = sqrt(2 / pi) (g + 0.044715 g^3);
// each element the same operations whatever n or its index.
void GeluTanhMul(Isa isa, float* gate, const float* up, int64_t n);
// GELU's tanh approximation constants: sqrt(2 / pi) and the cubic term's 0.044715.
inline constexpr float kGeluK = 0.7978845608028654f;
inline constexpr float kGeluCube = 0.044715f;
// y[i] += a * x[i] for i in [0, n).
void AxpyF32(Isa isa, float a, const float* x, float* y, int64_t n);

// Attention for `queries` query heads that share keys and values (a grouped-query group) over
// `count` positions whose keys (values) are the hd-float rows k_rows[p] (v_rows[p]). Query n is
// q + n * hd. scores[n * scores_stride + p] = dot(k_rows[p], query n) * scale; out[n * hd + i] =
// sum over p, in order, of w[n * w_stride + p] * v_rows[p][i]. Each key and value row is read
// once for all the queries. Each score and each output element goes through the same operations
// whatever count, p, the number of queries or the other rows are.
void AttentionScores(Isa isa, const float* const* k_rows, const float* q, int64_t queries,
                     int64_t count, int64_t hd, float scale, float* scores, int64_t scores_stride);
void AttentionValues(Isa isa, const float* const* v_rows, const float* w, int64_t w_stride,
                     int64_t queries, int64_t count, int64_t hd, float* out);
// The same over bf16 rows, widened exactly to f32 as they are read: bitwise the f32 kernels'
// results on the widened rows.
void AttentionScoresBf16(Isa isa, const uint16_t* const* k_rows, const float* q, int64_t queries,
                         int64_t count, int64_t hd, float scale, float* scores,
                         int64_t scores_stride);
void AttentionValuesBf16(Isa isa, const uint16_t* const* v_rows, const float* w, int64_t w_stride,
                         int64_t queries, int64_t count, int64_t hd, float* out);

// Scratch for MatMul: the quantized activations. Reused across calls to avoid allocations.
struct MatMulScratch {
  BlockQ8* blocks = nullptr;
  size_t capacity = 0;  // in blocks
  MatMulScratch() = default;
  MatMulScratch(const MatMulScratch&) = delete;  // owns `blocks`
  MatMulScratch& operator=(const MatMulScratch&) = delete;
  ~MatMulScratch();
  void Reserve(size_t num_blocks);
};

// y[m, n] = sum_k x[m, k] * w[n, k] for m in [0, rows), n in [0, w.rows): x is [rows, w.cols]
// and y is [rows, w.rows], both row-major with the given row strides (in floats). Work is split
// over the pool's threads by output columns n.
//
// For the quantized types, with x's row m quantized to blocks X[b] and w's row n to blocks
// W[b] (scale d, offset m for Q4_1, quants q), every path computes, in float:
//   acc = 0
//   for b in order: s = exact integer sum over the block of q_w * q_x (Q4_0: (q_w - 8) * q_x)
//                   acc = fma(W[b].d * X[b].d, float(s), acc)
//                   Q4_1: acc = fma(W[b].m, X[b].sum, acc)
//   y[m, n] = acc
// For the float types, with W the weights widened to f32 and X the activations, two running sums:
//   even = 0, odd = 0
//   for k = 0, 2, 4, ...: even = fma(W[n, k], X[m, k], even)
//                         odd = fma(W[n, k + 1], X[m, k + 1], odd)
//   y[m, n] = even + odd
void MatMul(ThreadPool& pool, Isa isa, const WeightMatrix& w, const float* x, int64_t rows,
            int64_t x_stride, float* y, int64_t y_stride, MatMulScratch* scratch);

// MatMul of several matrices over the same activation rows (a layer's q, k and v, or its gate
// and up): for the quantized types the rows are quantized once and all the matrices' columns split
// over the pool in one pass. Each output is bitwise MatMul's.
struct MatMulOutput {
  const WeightMatrix* w;
  float* y;
  int64_t y_stride;
};
void MatMulMany(ThreadPool& pool, Isa isa, std::span<const MatMulOutput> outs, const float* x,
                int64_t rows, int64_t x_stride, MatMulScratch* scratch);

}  // namespace kiln::native::cpu
