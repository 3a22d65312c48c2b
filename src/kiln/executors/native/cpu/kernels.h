// CPU kernels of the native runtime: matrix multiply over weights as stored (f32, or GGUF's
// Q8_0, Q4_0 and Q4_1 blocks), with activations quantized once per row to 8-bit blocks for the
// quantized formats, as llama.cpp's CPU path does.
//
// Every kernel has a portable C++ path and an AVX2+FMA path, picked at run time (features.h).
// Batch invariance is a contract, not an accident: each output element Y[m, n] is computed by the
// same sequence of floating-point operations whatever the number of rows m, the thread count and
// the position of the row in the batch. Paths may differ from each other; one path never differs
// from itself.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kiln/executors/native/cpu/features.h"
#include "kiln/executors/native/cpu/thread_pool.h"

namespace kiln::native::cpu {

// Weight layouts. The quantized ones are GGUF's, byte for byte: a row of `cols` weights is
// cols / 32 blocks.
//   Q8_0: {fp16 d; int8 q[32]}            w = d * q
//   Q4_0: {fp16 d; uint8 qs[16]}          w = d * (nibble - 8)
//   Q4_1: {fp16 d; fp16 m; uint8 qs[16]}  w = d * nibble + m
// where element j < 16 of a block is the low nibble of qs[j] and element j + 16 its high nibble.
enum class WeightType { kF32, kQ8_0, kQ4_0, kQ4_1 };
const char* WeightTypeName(WeightType type);
// Bytes of one row of `cols` weights (cols a multiple of 32 for the block types).
size_t RowBytes(WeightType type, int64_t cols);

// A [rows, cols] weight matrix, row-major: row n holds the weights of output n. Not owned.
struct WeightMatrix {
  WeightType type = WeightType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  const uint8_t* data = nullptr;  // rows * RowBytes(type, cols) bytes
};

// 32 activations quantized to 8 bits: x ~= d * q, with sum = d * (q[0] + ... + q[31]) kept for
// Q4_1's offset term (as ggml's block_q8_1, with f32 d and sum).
struct BlockQ8 {
  float d;
  float sum;
  int8_t q[32];
};

// Quantizes k values (k a multiple of 32) to k / 32 blocks: d = max|x| / 127, q = round(x / d)
// (round half away from zero, as ggml does).
void QuantizeRowQ8(Isa isa, const float* x, int64_t k, BlockQ8* out);

// Dot product of one weight row (layout above, `k` weights) with one quantized activation row.
float DotQ8_0(Isa isa, const uint8_t* w, const BlockQ8* x, int64_t k);
float DotQ4_0(Isa isa, const uint8_t* w, const BlockQ8* x, int64_t k);
float DotQ4_1(Isa isa, const uint8_t* w, const BlockQ8* x, int64_t k);
float DotF32(Isa isa, const float* w, const float* x, int64_t k);

// Attention's softmax numerator: x[i] = exp(x[i] - max) for i in [0, n), with max >= every
// x[i]; returns their sum. The exponential is a polynomial (relative error about 2e-7), the same
// for every element whatever n or its index, and the sum's order depends on n only.
float ExpSubMaxSum(Isa isa, float* x, int64_t n, float max);
// y[i] += a * x[i] for i in [0, n).
void AxpyF32(Isa isa, float a, const float* x, float* y, int64_t n);

// Attention for one query head over `count` positions whose keys (values) are the hd-float rows
// k_rows[p] (v_rows[p]). scores[p] = dot(k_rows[p], q) * scale; out[i] = sum over p, in order, of
// w[p] * v_rows[p][i]. Each score and each output element goes through the same operations
// whatever count, p or the other rows are.
void AttentionScores(Isa isa, const float* const* k_rows, const float* q, int64_t count, int64_t hd,
                     float scale, float* scores);
void AttentionValues(Isa isa, const float* const* v_rows, const float* w, int64_t count, int64_t hd,
                     float* out);

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
void MatMul(ThreadPool& pool, Isa isa, const WeightMatrix& w, const float* x, int64_t rows,
            int64_t x_stride, float* y, int64_t y_stride, MatMulScratch* scratch);

}  // namespace kiln::native::cpu
