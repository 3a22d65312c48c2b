// The AVX2 + FMA + F16C kernels (kernels_avx2.cc), called by kernels.cc only when the path is
// Isa::kAvx2, which SelectIsa gives only on a CPU that runs it.
//
// The declarations use plain types only: kernels_avx2.cc is compiled with -mavx2, and an inline
// function it shared with the portable files could be linked in for both.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kiln/executors/native/cpu/kernels.h"

namespace kiln::native::cpu::avx2 {

void QuantizeRowQ8(const float* x, int64_t k, BlockQ8* out);
float DotF32(const float* w, const float* x, int64_t k);
float ExpSubMaxSum(float* x, int64_t n, float max);
void AxpyF32(float a, const float* x, float* y, int64_t n);
// hd a multiple of 8.
void AttentionScores(const float* const* k_rows, const float* q, int64_t count, int64_t hd,
                     float scale, float* scores);
void AttentionValues(const float* const* v_rows, const float* w, int64_t count, int64_t hd,
                     float* out);

// y[r * y_stride] = the dot product of weight row w with the activation row
// x + r * x_stride (in blocks), for r in [0, rows), rows in [1, kMaxRows]. Each y is bitwise the
// same as with rows = 1: the weights are unpacked once and the per-row operations are those of
// the one-row kernel.
constexpr int kMaxRows = 4;
void DotRowsQ8_0(const uint8_t* w, const BlockQ8* x, int64_t x_stride, int rows, int64_t k,
                 float* y, int64_t y_stride);
void DotRowsQ4_0(const uint8_t* w, const BlockQ8* x, int64_t x_stride, int rows, int64_t k,
                 float* y, int64_t y_stride);
void DotRowsQ4_1(const uint8_t* w, const BlockQ8* x, int64_t x_stride, int rows, int64_t k,
                 float* y, int64_t y_stride);

// The batched kernel: y[m * y_stride + n] for m in [0, rows) and n in [n_begin, n_end), with w
// the whole weight matrix (rows row_bytes apart) and x `rows` quantized activation rows of k / 32
// blocks each, contiguous. Each y is bitwise DotRows*'s for that row alone; faster from 2 rows
// on, since a weight block is unpacked once per panel and each tile keeps its sums in registers.
void GemmQ8_0(const uint8_t* w, size_t row_bytes, int64_t n_begin, int64_t n_end, const BlockQ8* x,
              int64_t rows, int64_t k, float* y, int64_t y_stride);
void GemmQ4_0(const uint8_t* w, size_t row_bytes, int64_t n_begin, int64_t n_end, const BlockQ8* x,
              int64_t rows, int64_t k, float* y, int64_t y_stride);
void GemmQ4_1(const uint8_t* w, size_t row_bytes, int64_t n_begin, int64_t n_end, const BlockQ8* x,
              int64_t rows, int64_t k, float* y, int64_t y_stride);

}  // namespace kiln::native::cpu::avx2
