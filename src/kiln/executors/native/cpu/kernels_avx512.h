// The packed quantized and 16-bit matrix multiplies on 512-bit vectors (kernels_avx512.cc), called
// by kernels.cc only when the path is Isa::kAvx512, which SelectIsa gives only on a CPU that runs
// it. Same contract as avx2::PackedGemm* (kernels_avx2.h), bitwise the same results: a 512-bit
// vector holds two packed groups, whose lanes take the same operations.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kiln/executors/native/cpu/kernels.h"

namespace kiln::native::cpu::avx512 {

// As avx2::QuantizeRowQ8 (kernels_avx2.h), with the same blocks for finite values.
void QuantizeRowQ8(const float* x, int64_t k, BlockQ8* out);

// As avx2::PackedGemm (kernels_avx2.h), with the same results.
void PackedGemm(WeightType type, const uint8_t* w, int64_t g_begin, int64_t g_end, int64_t n,
                const BlockQ8* x, int64_t rows, int64_t k, float* y, int64_t y_stride);

// As avx2::FloatGemm (kernels_avx2.h), with the same results.
void FloatGemm(WeightType type, const uint8_t* w, int64_t g_begin, int64_t g_end, int64_t n,
               const float* x, int64_t rows, int64_t x_stride, int64_t k, float* y,
               int64_t y_stride);

}  // namespace kiln::native::cpu::avx512
