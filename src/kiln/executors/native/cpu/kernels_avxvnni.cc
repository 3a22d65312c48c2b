// The packed quantized matrix multiply with AVX-VNNI's vpdpbusd as the int8 dot product (one
// instruction for vpmaddubsw + vpmaddwd, summing the 4 products in 32 bits). Its sums are the
// AVX2 file's exact sums, so the results are bitwise the same.
#include "kiln/executors/native/cpu/kernels_avxvnni.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

namespace kiln::native::cpu::avxvnni {
namespace {

struct AccLarge {
  __m256i v;
  void Start(__m256i u, __m256i s) { v = _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, s); }
  void Add(__m256i u, __m256i s) { v = _mm256_dpbusd_avx_epi32(v, u, s); }
  __m256i Sum() const { return v; }
};
using AccSmall = AccLarge;

#include "kiln/executors/native/cpu/kernels_avx2_body.inc"

}  // namespace

void PackedGemm(WeightType type, const uint8_t* w, int64_t g_begin, int64_t g_end, int64_t n,
                const BlockQ8* x, int64_t rows, int64_t k, float* y, int64_t y_stride) {
  PackedGemmOf(type, w, g_begin, g_end, n, x, rows, k, y, y_stride);
}

}  // namespace kiln::native::cpu::avxvnni
