// AVX2 kernels: the packed quantized matrix multiply (kernels_avx2_body.inc) with vpmaddubsw +
// vpmaddwd as its int8 dot product, the activations' quantization, the f32 dot product and the
// attention kernels.
//
// Everything here has internal linkage but the entry points (see kernels_avx2.h for why).
#include "kiln/executors/native/cpu/kernels_avx2.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

namespace kiln::native::cpu::avx2 {
namespace {

// vpmaddubsw sums pairs of products into 16 bits. For u <= 15 and |s| <= 127 a pair is at most
// 3,810, so 8 of them still fit in 16 bits and one vpmaddwd per block widens them.
struct AccSmall {
  __m256i v;
  void Start(__m256i u, __m256i s) { v = _mm256_maddubs_epi16(u, s); }
  void Add(__m256i u, __m256i s) { v = _mm256_add_epi16(v, _mm256_maddubs_epi16(u, s)); }
  __m256i Sum() const { return _mm256_madd_epi16(v, _mm256_set1_epi16(1)); }
};

// For u <= 128 a pair is at most 32,512: each is widened to 32 bits at once.
struct AccLarge {
  __m256i v;
  void Start(__m256i u, __m256i s) {
    v = _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
  }
  void Add(__m256i u, __m256i s) {
    v = _mm256_add_epi32(v, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
  }
  __m256i Sum() const { return v; }
};

#include "kiln/executors/native/cpu/kernels_avx2_body.inc"

inline float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// An explicit FMA, so the rounding does not depend on whether the compiler contracts a * b + c.
inline float Fma(float a, float b, float c) {
  return _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(a), _mm_set_ss(b), _mm_set_ss(c)));
}

int HorizontalSumInt(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
  return _mm_cvtsi128_si32(s);
}

#include "kiln/executors/native/cpu/quantize_scales.inc"

}  // namespace

// Eight blocks at a time: their maxima go into one vector, so one vector division gives the 8
// scales and another their inverses (quantize_scales.inc). A block at a time, the divisions and the
// horizontal maximum made one long chain of latencies: 1.87 cycles an element on an AMD EPYC, 32
// rows of 1,536.
void QuantizeRowQ8(const float* x, int64_t k, BlockQ8* out) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 half = _mm256_set1_ps(0.5f);
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  const int64_t blocks = k / 32;
  for (int64_t b0 = 0; b0 < blocks; b0 += 8) {
    const int count = static_cast<int>(std::min<int64_t>(8, blocks - b0));
    __m256 amax[8];
    for (int i = 0; i < 8; ++i) {
      amax[i] = _mm256_setzero_ps();
      if (i >= count) continue;
      for (int j = 0; j < 4; ++j) {
        const __m256 v = _mm256_loadu_ps(x + 32 * (b0 + i) + 8 * j);
        amax[i] = _mm256_max_ps(amax[i], _mm256_andnot_ps(sign, v));
      }
    }
    float d[8], inv[8];
    BlockScales(amax, d, inv);
    for (int i = 0; i < count; ++i) {
      const float* p = x + 32 * (b0 + i);
      const __m256 scale = _mm256_broadcast_ss(inv + i);
      __m256i q[4];
      __m256i isum = _mm256_setzero_si256();
      for (int j = 0; j < 4; ++j) {
        // Round half away from zero: truncate, then step away from zero when the dropped
        // fraction (exact) is at least one half.
        __m256 s = _mm256_mul_ps(_mm256_loadu_ps(p + 8 * j), scale);
        __m256 t = _mm256_round_ps(s, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
        __m256 up = _mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_sub_ps(s, t)), half, _CMP_GE_OQ);
        __m256 step = _mm256_and_ps(up, _mm256_or_ps(_mm256_and_ps(s, sign), one));
        q[j] = _mm256_cvtps_epi32(_mm256_add_ps(t, step));
        isum = _mm256_add_epi32(isum, q[j]);
      }
      __m256i packed =
          _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
      BlockQ8& o = out[b0 + i];
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(o.q),
                          _mm256_permutevar8x32_epi32(packed, order));
      const int qsum = HorizontalSumInt(isum);
      o.d = d[i];
      o.sum = d[i] * static_cast<float>(qsum);
      o.qsum = qsum;
    }
  }
}

namespace {

// Cephes' expf over 8 lanes (kernels.cc's ExpPortable, with fused multiply-adds).
__m256 Exp8(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i bits =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

// Lanes [0, n) set, for n in [0, 8].
__m256i LaneMask(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// gate[i] = step(gate[i], up[i]) for i in [0, n), 8 at a time; the tail goes through the same
// vector operations, so an element's result does not depend on n or its index.
template <typename Step>
void GatedProduct(float* gate, const float* up, int64_t n, Step step) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(gate + i, step(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
  }
  if (i < n) {
    const __m256i mask = LaneMask(n - i);
    _mm256_maskstore_ps(gate + i, mask,
                        step(_mm256_maskload_ps(gate + i, mask), _mm256_maskload_ps(up + i, mask)));
  }
}

}  // namespace

float ExpSubMaxSum(float* x, int64_t n, float max) {
  // Every element goes through Exp8, the tail too (masked), so its value does not depend on n.
  const __m256 m = _mm256_set1_ps(max);
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 e = Exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), m));
    _mm256_storeu_ps(x + i, e);
    acc = _mm256_add_ps(acc, e);
  }
  if (i < n) {
    const __m256i mask = LaneMask(n - i);
    const __m256 e = _mm256_and_ps(Exp8(_mm256_sub_ps(_mm256_maskload_ps(x + i, mask), m)),
                                   _mm256_castsi256_ps(mask));
    _mm256_maskstore_ps(x + i, mask, e);
    acc = _mm256_add_ps(acc, e);
  }
  return HorizontalSum(acc);
}

void SiluMul(float* gate, const float* up, int64_t n) {
  // exp(-g) by Exp8, its argument kept below 88 so that 2^n stays a finite float (there g /
  // (1 + e) is -0 or a denormal either way).
  const __m256 one = _mm256_set1_ps(1.0f), top = _mm256_set1_ps(88.0f);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  GatedProduct(gate, up, n, [&](__m256 g, __m256 u) {
    const __m256 e = Exp8(_mm256_min_ps(_mm256_xor_ps(g, sign), top));
    return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), u);
  });
}

void GeluTanhMul(float* gate, const float* up, int64_t n) {
  // gelu_tanh(g) = g / (1 + exp(-2u)), u = sqrt(2 / pi) (g + 0.044715 g^3); the exponent kept
  // below 88 as in SiluMul.
  const __m256 one = _mm256_set1_ps(1.0f), top = _mm256_set1_ps(88.0f);
  const __m256 minus_2k = _mm256_set1_ps(-2.0f * kGeluK), cube = _mm256_set1_ps(kGeluCube);
  GatedProduct(gate, up, n, [&](__m256 g, __m256 u) {
    const __m256 g3 = _mm256_mul_ps(_mm256_mul_ps(g, g), g);
    const __m256 t = _mm256_mul_ps(minus_2k, _mm256_fmadd_ps(cube, g3, g));
    const __m256 e = Exp8(_mm256_min_ps(t, top));
    return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), u);
  });
}

void AxpyF32(float a, const float* x, float* y, int64_t n) {
  const __m256 va = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  }
  for (; i < n; ++i) y[i] = Fma(a, x[i], y[i]);
}

namespace {

// One score's reduction: its 8 lanes as ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)),
// computed for 4 accumulators at once (two hadd levels, then the halves added).
inline __m128 ReduceFour(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
  const __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
  return _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
}

// 8 values of a key or value row: f32 as they are, bf16 widened (exactly) to f32.
inline __m256 Load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 Load8(const uint16_t* p) {
  const __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
}

// Rows [g, g + 8) (a short last group repeats row g in the missing places; their scores are
// dropped), for one query: 8 accumulators, each the fused sum over hd in order.
template <typename T>
void ScoresOne(const T* const* k_rows, const float* q, int64_t count, int64_t hd, __m128 vscale,
               float* scores) {
  for (int64_t g = 0; g < count; g += 8) {
    const T* rows[8];
    for (int j = 0; j < 8; ++j) rows[j] = k_rows[g + j < count ? g + j : g];
    __m256 acc[8];
    for (int j = 0; j < 8; ++j) acc[j] = _mm256_setzero_ps();
    int64_t d = 0;  // hd >= 8 (see ScoresMany)
    do {
      const __m256 qv = _mm256_loadu_ps(q + d);
      for (int j = 0; j < 8; ++j) acc[j] = _mm256_fmadd_ps(Load8(rows[j] + d), qv, acc[j]);
      d += 8;
    } while (d < hd);
    alignas(32) float out[8];
    _mm_store_ps(out, _mm_mul_ps(ReduceFour(acc[0], acc[1], acc[2], acc[3]), vscale));
    _mm_store_ps(out + 4, _mm_mul_ps(ReduceFour(acc[4], acc[5], acc[6], acc[7]), vscale));
    const int64_t n = std::min<int64_t>(8, count - g);
    for (int64_t j = 0; j < n; ++j) scores[g + j] = out[j];
  }
}

// N queries, 4 rows at a time: each key vector is loaded once for the N queries, and each
// score takes ScoresOne's operations.
template <int N, typename T>
void ScoresMany(const T* const* k_rows, const float* q, int64_t count, int64_t hd, __m128 vscale,
                float* scores, int64_t scores_stride) {
  for (int64_t g = 0; g < count; g += 4) {
    const T* rows[4];
    for (int j = 0; j < 4; ++j) rows[j] = k_rows[g + j < count ? g + j : g];
    __m256 acc[N][4];
    for (int n = 0; n < N; ++n) {
      for (int j = 0; j < 4; ++j) acc[n][j] = _mm256_setzero_ps();
    }
    // hd >= 8: a loop that runs at least once lets the compiler keep the accumulators in
    // registers through the reduction below.
    int64_t d = 0;
    do {
      __m256 qv[N];
      for (int n = 0; n < N; ++n) qv[n] = _mm256_loadu_ps(q + n * hd + d);
      for (int j = 0; j < 4; ++j) {
        const __m256 kv = Load8(rows[j] + d);
        for (int n = 0; n < N; ++n) acc[n][j] = _mm256_fmadd_ps(kv, qv[n], acc[n][j]);
      }
      d += 8;
    } while (d < hd);
    const int64_t m = std::min<int64_t>(4, count - g);
    for (int n = 0; n < N; ++n) {
      const __m128 s = _mm_mul_ps(ReduceFour(acc[n][0], acc[n][1], acc[n][2], acc[n][3]), vscale);
      float* to = scores + n * scores_stride + g;
      if (m == 4) {
        _mm_storeu_ps(to, s);
      } else {
        alignas(16) float out[4];
        _mm_store_ps(out, s);
        for (int64_t j = 0; j < m; ++j) to[j] = out[j];
      }
    }
  }
}

// Outputs [c, c + 8 W) of N queries, held in N * W registers over all positions: each value
// vector is loaded once for the N queries; each output element is its fused sum over positions in
// order.
template <int N, int W, typename T>
void ValuesChunk(const T* const* v_rows, const float* w, int64_t w_stride, int64_t count,
                 int64_t hd, int64_t c, float* out) {
  __m256 acc[N][W];
  for (int n = 0; n < N; ++n) {
    for (int v = 0; v < W; ++v) acc[n][v] = _mm256_setzero_ps();
  }
  for (int64_t p = 0; p < count; ++p) {
    __m256 wp[N];
    for (int n = 0; n < N; ++n) wp[n] = _mm256_set1_ps(w[n * w_stride + p]);
    const T* row = v_rows[p] + c;
    for (int v = 0; v < W; ++v) {
      const __m256 x = Load8(row + 8 * v);
      for (int n = 0; n < N; ++n) acc[n][v] = _mm256_fmadd_ps(wp[n], x, acc[n][v]);
    }
  }
  for (int n = 0; n < N; ++n) {
    for (int v = 0; v < W; ++v) _mm256_storeu_ps(out + n * hd + c + 8 * v, acc[n][v]);
  }
}

// All hd outputs of N queries: chunks of 8 * (8 / N) floats (the registers' worth), then single
// vectors.
template <int N, typename T>
void ValuesMany(const T* const* v_rows, const float* w, int64_t w_stride, int64_t count, int64_t hd,
                float* out) {
  constexpr int kWide = N == 1 ? 8 : 4;
  int64_t c = 0;
  for (; c + 8 * kWide <= hd; c += 8 * kWide)
    ValuesChunk<N, kWide, T>(v_rows, w, w_stride, count, hd, c, out);
  for (; c < hd; c += 8) ValuesChunk<N, 1, T>(v_rows, w, w_stride, count, hd, c, out);
}

template <typename T>
void Scores(const T* const* k_rows, const float* q, int64_t queries, int64_t count, int64_t hd,
            float scale, float* scores, int64_t scores_stride) {
  const __m128 vscale = _mm_set1_ps(scale);
  int64_t n = 0;
  for (; n + 3 <= queries; n += 3) {
    ScoresMany<3, T>(k_rows, q + n * hd, count, hd, vscale, scores + n * scores_stride,
                     scores_stride);
  }
  if (queries - n == 2) {
    ScoresMany<2, T>(k_rows, q + n * hd, count, hd, vscale, scores + n * scores_stride,
                     scores_stride);
  } else if (queries - n == 1) {
    ScoresOne<T>(k_rows, q + n * hd, count, hd, vscale, scores + n * scores_stride);
  }
}

template <typename T>
void Values(const T* const* v_rows, const float* w, int64_t w_stride, int64_t queries,
            int64_t count, int64_t hd, float* out) {
  int64_t n = 0;
  for (; n + 3 <= queries; n += 3) {
    ValuesMany<3, T>(v_rows, w + n * w_stride, w_stride, count, hd, out + n * hd);
  }
  if (queries - n == 2) {
    ValuesMany<2, T>(v_rows, w + n * w_stride, w_stride, count, hd, out + n * hd);
  } else if (queries - n == 1) {
    ValuesMany<1, T>(v_rows, w + n * w_stride, w_stride, count, hd, out + n * hd);
  }
}

// The float weight matrix multiply (kernels.h: MatMul's definition for kF32, kBF16 and kF16). A
// packed record of one group (8 rows x weights k, k + 1) is two vectors of 8 lanes, rows 0-3 and
// rows 4-7, each lane one row's even or odd weight; the activations k, k + 1 broadcast as a pair
// meet them, so lane 2r accumulates row r's even sum and lane 2r + 1 its odd one.
// 8 weights at p as f32.
template <WeightType T>
inline __m256 Widen8(const uint8_t* p) {
  if constexpr (T == WeightType::kF32) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(p));
  } else {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    if constexpr (T == WeightType::kBF16) {
      return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    } else {
      return _mm256_cvtph_ps(h);
    }
  }
}

inline __m256 BroadcastPair(const float* x) {
  double pair;
  std::memcpy(&pair, x, 8);
  return _mm256_castpd_ps(_mm256_set1_pd(pair));
}

// Rows r's even + odd sums, r = 0..7, from the two accumulators.
inline __m256 PairSums(__m256 rows_0_3, __m256 rows_4_7) {
  // hadd gives rows 0, 1, 4, 5 | 2, 3, 6, 7.
  const __m256 s = _mm256_hadd_ps(rows_0_3, rows_4_7);
  return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(s), 0xD8));
}

// G groups (8 columns each, `group_bytes` apart) x M activation rows.
template <WeightType T, int G, int M>
void FloatTile(const uint8_t* w, int64_t group_bytes, const float* x, int64_t x_stride, int64_t k,
               float* y, int64_t y_stride, int64_t cols_in_last) {
  __m256 acc[M][G][2];
  for (int m = 0; m < M; ++m) {
    for (int g = 0; g < G; ++g) acc[m][g][0] = acc[m][g][1] = _mm256_setzero_ps();
  }
  for (int64_t i = 0; i < k; i += 2) {
    __m256 lo[G], hi[G];
    for (int g = 0; g < G; ++g) {
      const uint8_t* rec = w + g * group_bytes + i * kPackRows * FloatTypeBytes(T);
      lo[g] = Widen8<T>(rec);
      hi[g] = Widen8<T>(rec + 8 * FloatTypeBytes(T));
    }
    for (int m = 0; m < M; ++m) {
      const __m256 xv = BroadcastPair(x + m * x_stride + i);
      for (int g = 0; g < G; ++g) {
        acc[m][g][0] = _mm256_fmadd_ps(lo[g], xv, acc[m][g][0]);
        acc[m][g][1] = _mm256_fmadd_ps(hi[g], xv, acc[m][g][1]);
      }
    }
  }
  for (int m = 0; m < M; ++m) {
    for (int g = 0; g < G; ++g) {
      const __m256 sums = PairSums(acc[m][g][0], acc[m][g][1]);
      float* out = y + m * y_stride + g * kPackRows;
      if (g < G - 1 || cols_in_last == kPackRows) {
        _mm256_storeu_ps(out, sums);
      } else {
        alignas(32) float tmp[kPackRows];
        _mm256_store_ps(tmp, sums);
        std::memcpy(out, tmp, static_cast<size_t>(cols_in_last) * sizeof(float));
      }
    }
  }
}

// Tile shapes for kernels_float_driver.inc.
constexpr int kDecodeGroups = 4;
constexpr int kTileGroups = 1;
constexpr int kTileRows = 6;  // 12 accumulators, 2 weight vectors and a broadcast: 15 registers

#include "kiln/executors/native/cpu/kernels_float_driver.inc"

}  // namespace

void AttentionScores(const float* const* k_rows, const float* q, int64_t queries, int64_t count,
                     int64_t hd, float scale, float* scores, int64_t scores_stride) {
  Scores(k_rows, q, queries, count, hd, scale, scores, scores_stride);
}

void AttentionScoresBf16(const uint16_t* const* k_rows, const float* q, int64_t queries,
                         int64_t count, int64_t hd, float scale, float* scores,
                         int64_t scores_stride) {
  Scores(k_rows, q, queries, count, hd, scale, scores, scores_stride);
}

void AttentionValues(const float* const* v_rows, const float* w, int64_t w_stride, int64_t queries,
                     int64_t count, int64_t hd, float* out) {
  Values(v_rows, w, w_stride, queries, count, hd, out);
}

void AttentionValuesBf16(const uint16_t* const* v_rows, const float* w, int64_t w_stride,
                         int64_t queries, int64_t count, int64_t hd, float* out) {
  Values(v_rows, w, w_stride, queries, count, hd, out);
}

void PackedGemm(WeightType type, const uint8_t* w, int64_t g_begin, int64_t g_end, int64_t n,
                const BlockQ8* x, int64_t rows, int64_t k, float* y, int64_t y_stride) {
  PackedGemmOf(type, w, g_begin, g_end, n, x, rows, k, y, y_stride);
}

void FloatGemm(WeightType type, const uint8_t* w, int64_t g_begin, int64_t g_end, int64_t n,
               const float* x, int64_t rows, int64_t x_stride, int64_t k, float* y,
               int64_t y_stride) {
  FloatGemmOfType(type, w, g_begin, g_end, n, x, rows, x_stride, k, y, y_stride);
}

}  // namespace kiln::native::cpu::avx2
