// The batched kernels with AVX-VNNI's vpdpbusd as the int8 dot product (one instruction for
// vpmaddubsw + vpmaddwd). It sums the 4 products in 32 bits, where vpmaddubsw would saturate a
// pair at 16 bits; the body's callers keep every pair within 16 bits, so the sums are the same.
#include "kiln/executors/native/cpu/kernels_avxvnni.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace kiln::native::cpu::avxvnni {
namespace {

inline __m256i Dot4(__m256i u, __m256i s) {
  return _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, s);
}

#include "kiln/executors/native/cpu/kernels_avx2_body.inc"

}  // namespace

void GemmQ8_0(const uint8_t* w, size_t row_bytes, int64_t n_begin, int64_t n_end, const BlockQ8* x,
              int64_t rows, int64_t k, float* y, int64_t y_stride) {
  GemmImpl<Q8_0>(w, row_bytes, n_begin, n_end, x, rows, k, y, y_stride);
}

void GemmQ4_0(const uint8_t* w, size_t row_bytes, int64_t n_begin, int64_t n_end, const BlockQ8* x,
              int64_t rows, int64_t k, float* y, int64_t y_stride) {
  GemmImpl<Q4_0>(w, row_bytes, n_begin, n_end, x, rows, k, y, y_stride);
}

void GemmQ4_1(const uint8_t* w, size_t row_bytes, int64_t n_begin, int64_t n_end, const BlockQ8* x,
              int64_t rows, int64_t k, float* y, int64_t y_stride) {
  GemmImpl<Q4_1>(w, row_bytes, n_begin, n_end, x, rows, k, y, y_stride);
}

}  // namespace kiln::native::cpu::avxvnni
