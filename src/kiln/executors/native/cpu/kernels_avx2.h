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
float ExpSubMaxSum(float* x, int64_t n, float max);
void AxpyF32(float a, const float* x, float* y, int64_t n);
void SiluMul(float* gate, const float* up, int64_t n);
void GeluTanhMul(float* gate, const float* up, int64_t n);
// hd a multiple of 8.
void AttentionScores(const float* const* k_rows, const float* q, int64_t queries, int64_t count,
                     int64_t hd, float scale, float* scores, int64_t scores_stride);
void AttentionValues(const float* const* v_rows, const float* w, int64_t w_stride, int64_t queries,
                     int64_t count, int64_t hd, float* out);
void AttentionScoresBf16(const uint16_t* const* k_rows, const float* q, int64_t queries,
                         int64_t count, int64_t hd, float scale, float* scores,
                         int64_t scores_stride);
void AttentionValuesBf16(const uint16_t* const* v_rows, const float* w, int64_t w_stride,
                         int64_t queries, int64_t count, int64_t hd, float* out);

// y[m * y_stride + c] for m in [0, rows) and the columns c of groups [g_begin, g_end) of a
// packed matrix of `type` (kernels.h: PackWeights) of n columns; x holds `rows` quantized
// activation rows of k / 32 blocks each, contiguous. Each output is bitwise the portable
// kernel's, whatever rows, the group range or the row's place in the batch.
void PackedGemm(WeightType type, const uint8_t* w, int64_t g_begin, int64_t g_end, int64_t n,
                const BlockQ8* x, int64_t rows, int64_t k, float* y, int64_t y_stride);

// The float types (kF32, kBF16, kF16): y[m * y_stride + c] for m in [0, rows) and the columns c of
// groups [g_begin, g_end) of a packed matrix of n columns, x holding `rows` f32 activation rows
// x_stride apart. Bitwise the portable kernel's (MatMul's definition).
void FloatGemm(WeightType type, const uint8_t* w, int64_t g_begin, int64_t g_end, int64_t n,
               const float* x, int64_t rows, int64_t x_stride, int64_t k, float* y,
               int64_t y_stride);

}  // namespace kiln::native::cpu::avx2
