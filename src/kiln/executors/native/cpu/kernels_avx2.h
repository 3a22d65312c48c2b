// The AVX2 + FMA + F16C kernels (kernels_avx2.cc), called by kernels.cc only when the path is
// Isa::kAvx2, which SelectIsa gives only on a CPU that runs it.
//
// The declarations use plain types only: kernels_avx2.cc is compiled with -mavx2, and an inline
// function it shared with the portable files could be linked in for both.
#pragma once

#include <cstdint>

#include "kiln/executors/native/cpu/kernels.h"

namespace kiln::native::cpu::avx2 {

void QuantizeRowQ8(const float* x, int64_t k, BlockQ8* out);
float DotF32(const float* w, const float* x, int64_t k);

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

}  // namespace kiln::native::cpu::avx2
