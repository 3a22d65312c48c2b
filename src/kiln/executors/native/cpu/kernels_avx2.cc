// AVX2 kernels. The int8 dot products follow llama.cpp's x86 path: the weights' and the
// activations' bytes are multiplied by vpmaddubsw (unsigned x signed; a signed weight is made
// unsigned by taking its absolute value and moving its sign onto the activation), the 16-bit pair
// sums are widened to 8 int32 lanes by vpmaddwd, and each block's lanes are scaled and summed in
// float by one FMA. The integer part is exact, so only the per-block float order matters.
//
// Everything here has internal linkage but the entry points (see kernels_avx2.h for why).
#include "kiln/executors/native/cpu/kernels_avx2.h"

#include <immintrin.h>

#include <cstring>

namespace kiln::native::cpu::avx2 {
namespace {

constexpr int64_t kPrefetchBytes = 4096;

float LoadHalf(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

float HorizontalMax(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

int HorizontalSumInt(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
  return _mm_cvtsi128_si32(s);
}

// 32 weights of a Q4 block as bytes 0..15: the low nibbles (elements 0..15) in the low 128 bits,
// the high nibbles (elements 16..31) in the high 128 bits.
__m256i UnpackNibbles(const uint8_t* qs) {
  __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  __m256i both = _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0f));
}

// Sums of 4 adjacent products u[i] * s[i] (u unsigned, s signed; no pair sum saturates for
// |s| <= 127 and u <= 128), as 8 floats.
__m256 MulSum(__m256i u, __m256i s) {
  __m256i pairs = _mm256_maddubs_epi16(u, s);
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
}

// An explicit FMA, so the rounding does not depend on whether the compiler contracts a * b + c.
float Fma(float a, float b, float c) {
  return _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(a), _mm_set_ss(b), _mm_set_ss(c)));
}

__m256i LoadQ(const BlockQ8& b) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.q));
}

// The per-block step of each format, for R activation rows at once. Every row gets exactly the
// operations it would get alone.
struct Q8_0 {
  static constexpr int kBytes = 34;
  template <int R>
  static void Step(const uint8_t* w, const BlockQ8* const* x, int64_t b, __m256* acc, float*) {
    __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 2));
    __m256i abs_q = _mm256_sign_epi8(q, q);
    float d = LoadHalf(w);
    for (int r = 0; r < R; ++r) {
      __m256 sum = MulSum(abs_q, _mm256_sign_epi8(LoadQ(x[r][b]), q));
      acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * x[r][b].d), sum, acc[r]);
    }
  }
};

struct Q4_0 {
  static constexpr int kBytes = 18;
  template <int R>
  static void Step(const uint8_t* w, const BlockQ8* const* x, int64_t b, __m256* acc, float*) {
    __m256i q = _mm256_sub_epi8(UnpackNibbles(w + 2), _mm256_set1_epi8(8));
    __m256i abs_q = _mm256_sign_epi8(q, q);
    float d = LoadHalf(w);
    for (int r = 0; r < R; ++r) {
      __m256 sum = MulSum(abs_q, _mm256_sign_epi8(LoadQ(x[r][b]), q));
      acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * x[r][b].d), sum, acc[r]);
    }
  }
};

struct Q4_1 {
  static constexpr int kBytes = 20;
  template <int R>
  static void Step(const uint8_t* w, const BlockQ8* const* x, int64_t b, __m256* acc,
                   float* offset) {
    __m256i q = UnpackNibbles(w + 4);
    float d = LoadHalf(w);
    float m = LoadHalf(w + 2);
    for (int r = 0; r < R; ++r) {
      __m256 sum = MulSum(q, LoadQ(x[r][b]));
      acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * x[r][b].d), sum, acc[r]);
      offset[r] = Fma(m, x[r][b].sum, offset[r]);
    }
  }
};

// Even and odd blocks go to two accumulators, so two FMA chains overlap.
template <typename Format, int R>
void DotRowsImpl(const uint8_t* w, const BlockQ8* x, int64_t x_stride, int64_t k, float* y,
                 int64_t y_stride) {
  const BlockQ8* rows[R];
  __m256 even[R], odd[R];
  float even_offset[R], odd_offset[R];
  for (int r = 0; r < R; ++r) {
    rows[r] = x + r * x_stride;
    even[r] = _mm256_setzero_ps();
    odd[r] = _mm256_setzero_ps();
    even_offset[r] = 0.0f;
    odd_offset[r] = 0.0f;
  }
  int64_t blocks = k / 32;
  int64_t b = 0;
  for (; b + 1 < blocks; b += 2) {
    // The weights stream from memory once per step; asking for the bytes kPrefetchBytes ahead
    // (into the next rows, which are contiguous) keeps the loads from stalling where the
    // hardware prefetcher does not look that far.
    _mm_prefetch(reinterpret_cast<const char*>(w + b * Format::kBytes + kPrefetchBytes),
                 _MM_HINT_T0);
    Format::template Step<R>(w + b * Format::kBytes, rows, b, even, even_offset);
    Format::template Step<R>(w + (b + 1) * Format::kBytes, rows, b + 1, odd, odd_offset);
  }
  if (b < blocks) Format::template Step<R>(w + b * Format::kBytes, rows, b, even, even_offset);
  for (int r = 0; r < R; ++r) {
    y[r * y_stride] =
        HorizontalSum(_mm256_add_ps(even[r], odd[r])) + (even_offset[r] + odd_offset[r]);
  }
}

template <typename Format>
void DotRows(const uint8_t* w, const BlockQ8* x, int64_t x_stride, int rows, int64_t k, float* y,
             int64_t y_stride) {
  switch (rows) {
    case 1:
      return DotRowsImpl<Format, 1>(w, x, x_stride, k, y, y_stride);
    case 2:
      return DotRowsImpl<Format, 2>(w, x, x_stride, k, y, y_stride);
    case 3:
      return DotRowsImpl<Format, 3>(w, x, x_stride, k, y, y_stride);
    default:
      return DotRowsImpl<Format, 4>(w, x, x_stride, k, y, y_stride);
  }
}

}  // namespace

void QuantizeRowQ8(const float* x, int64_t k, BlockQ8* out) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 half = _mm256_set1_ps(0.5f);
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int64_t b = 0; b < k / 32; ++b) {
    const float* p = x + 32 * b;
    __m256 v[4];
    __m256 amax = _mm256_setzero_ps();
    for (int j = 0; j < 4; ++j) {
      v[j] = _mm256_loadu_ps(p + 8 * j);
      amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v[j]));
    }
    float d = HorizontalMax(amax) / 127.0f;
    __m256 inv = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
    __m256i q[4];
    __m256i isum = _mm256_setzero_si256();
    for (int j = 0; j < 4; ++j) {
      // Round half away from zero: truncate, then step away from zero when the dropped
      // fraction (exact) is at least one half.
      __m256 s = _mm256_mul_ps(v[j], inv);
      __m256 t = _mm256_round_ps(s, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
      __m256 up = _mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_sub_ps(s, t)), half, _CMP_GE_OQ);
      __m256 step = _mm256_and_ps(up, _mm256_or_ps(_mm256_and_ps(s, sign), one));
      q[j] = _mm256_cvtps_epi32(_mm256_add_ps(t, step));
      isum = _mm256_add_epi32(isum, q[j]);
    }
    __m256i packed =
        _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out[b].q),
                        _mm256_permutevar8x32_epi32(packed, order));
    out[b].d = d;
    out[b].sum = d * static_cast<float>(HorizontalSumInt(isum));
  }
}

float DotF32(const float* w, const float* x, int64_t k) {
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
  int64_t i = 0;
  for (; i + 32 <= k; i += 32) {
    // As in DotRowsImpl: a weight row is streamed once, so ask for what follows it early.
    const char* ahead = reinterpret_cast<const char*>(w + i) + kPrefetchBytes;
    _mm_prefetch(ahead, _MM_HINT_T0);
    _mm_prefetch(ahead + 64, _MM_HINT_T0);
    for (int j = 0; j < 4; ++j) {
      acc[j] =
          _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8 * j), _mm256_loadu_ps(x + i + 8 * j), acc[j]);
    }
  }
  for (; i + 8 <= k; i += 8) {
    acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), acc[0]);
  }
  float tail = 0.0f;
  for (; i < k; ++i) tail = Fma(w[i], x[i], tail);
  __m256 sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
  return HorizontalSum(sum) + tail;
}

void DotRowsQ8_0(const uint8_t* w, const BlockQ8* x, int64_t x_stride, int rows, int64_t k,
                 float* y, int64_t y_stride) {
  DotRows<Q8_0>(w, x, x_stride, rows, k, y, y_stride);
}

void DotRowsQ4_0(const uint8_t* w, const BlockQ8* x, int64_t x_stride, int rows, int64_t k,
                 float* y, int64_t y_stride) {
  DotRows<Q4_0>(w, x, x_stride, rows, k, y, y_stride);
}

void DotRowsQ4_1(const uint8_t* w, const BlockQ8* x, int64_t x_stride, int rows, int64_t k,
                 float* y, int64_t y_stride) {
  DotRows<Q4_1>(w, x, x_stride, rows, k, y, y_stride);
}

}  // namespace kiln::native::cpu::avx2
