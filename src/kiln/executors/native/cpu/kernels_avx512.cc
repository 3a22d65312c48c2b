// The packed quantized matrix multiply on AVX-512 (F, BW, VL, VNNI): two packed groups of 8
// columns side by side in each 512-bit vector, so one vpdpbusd advances 16 outputs by 4
// products, and each unpacked weight vector meets up to 8 activation rows. Per lane the
// operations are the 256-bit kernels' (kernels_avx2_body.inc): exact int32 block sums, then the
// same multiply and FMAs in the same order, so the results are bitwise the same.
#include "kiln/executors/native/cpu/kernels_avx512.h"

// GCC 12's AVX-512 headers build some intrinsics' results from a self-initialized "undefined"
// vector, which its -Wmaybe-uninitialized (and, for some, -Wuninitialized) reports at every use
// (a false positive).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <utility>

namespace kiln::native::cpu::avx512 {
namespace {

// Weights are read once per step from memory, a record at a time: every cache line of the
// record 8 KiB ahead is prefetched into L2 (kernels_avx2_body.inc says why).
constexpr int64_t kPrefetchBytes = 8192;

template <int kRecord>
inline void PrefetchRecord(const uint8_t* record) {
  for (int line = 0; line < kRecord; line += 64) {
    _mm_prefetch(reinterpret_cast<const char*>(record + kPrefetchBytes + line), _MM_HINT_T1);
  }
}
constexpr int kTileRows = 8;

inline __m512i Broadcast4(const int8_t* q) {
  int32_t v;
  std::memcpy(&v, q, 4);
  return _mm512_set1_epi32(v);
}

// 32 bytes from each group, group a in the low half.
inline __m512i LoadPair(const uint8_t* a, const uint8_t* b) {
  return _mm512_inserti64x4(
      _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a))),
      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b)), 1);
}

// 8 halves from each group, as 16 floats.
inline __m512 LoadHalvesPair(const uint8_t* a, const uint8_t* b) {
  __m256i h = _mm256_inserti128_si256(
      _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a))),
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(b)), 1);
  return _mm512_cvtph_ps(h);
}

// Q8_0's signed weights are offset to unsigned (w + 128, by flipping the top bit), which
// vpdpbusd multiplies without saturating: sum (w + 128) x - 128 sum x = sum w x, exactly.
struct Q8_0 {
  static constexpr int kRecord = 16 + 256;
  static constexpr int kQuants = 16;
  static constexpr bool kOffset = false;
  static constexpr int kBias = 128;
  static void Load(const uint8_t* a, const uint8_t* b, int j, __m512i* lo, __m512i* hi) {
    const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
    *lo = _mm512_xor_si512(LoadPair(a + 32 * j, b + 32 * j), flip);
    *hi = _mm512_xor_si512(LoadPair(a + 32 * (j + 4), b + 32 * (j + 4)), flip);
  }
};

inline void LoadNibbles(const uint8_t* a, const uint8_t* b, int j, __m512i* lo, __m512i* hi) {
  const __m512i v = LoadPair(a + 32 * j, b + 32 * j);
  const __m512i mask = _mm512_set1_epi8(0x0f);
  *lo = _mm512_and_si512(v, mask);
  *hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), mask);
}

struct Q4_0 {
  static constexpr int kRecord = 16 + 128;
  static constexpr int kQuants = 16;
  static constexpr bool kOffset = false;
  static constexpr int kBias = 8;
  static void Load(const uint8_t* a, const uint8_t* b, int j, __m512i* lo, __m512i* hi) {
    LoadNibbles(a, b, j, lo, hi);
  }
};

struct Q4_1 {
  static constexpr int kRecord = 32 + 128;
  static constexpr int kQuants = 32;
  static constexpr bool kOffset = true;
  static constexpr int kBias = 0;
  static void Load(const uint8_t* a, const uint8_t* b, int j, __m512i* lo, __m512i* hi) {
    LoadNibbles(a, b, j, lo, hi);
  }
};

// MR rows against groups a and b (b may repeat a when a is the last one: then only `cols` <= 8
// outputs are kept). Writes `cols` (<= 16) outputs of each row, a's 8 first.
template <typename F, int MR>
void PairTile(const uint8_t* a, const uint8_t* b, int64_t blocks, const BlockQ8* x, float* y,
              int64_t y_stride, int cols) {
  __m512 out[MR];
  for (int r = 0; r < MR; ++r) out[r] = _mm512_setzero_ps();
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const uint8_t* ra = a + blk * F::kRecord;
    const uint8_t* rb = b + blk * F::kRecord;
    PrefetchRecord<F::kRecord>(ra);
    PrefetchRecord<F::kRecord>(rb);
    __m512i acc[MR];
    for (int r = 0; r < MR; ++r) acc[r] = _mm512_setzero_si512();
    for (int j = 0; j < 4; ++j) {
      __m512i lo, hi;
      F::Load(ra + F::kQuants, rb + F::kQuants, j, &lo, &hi);
      for (int r = 0; r < MR; ++r) {
        const int8_t* q = x[r * blocks + blk].q;
        acc[r] = _mm512_dpbusd_epi32(acc[r], lo, Broadcast4(q + 4 * j));
        acc[r] = _mm512_dpbusd_epi32(acc[r], hi, Broadcast4(q + 16 + 4 * j));
      }
    }
    const __m512 d = LoadHalvesPair(ra, rb);
    const __m512 offset = F::kOffset ? LoadHalvesPair(ra + 16, rb + 16) : _mm512_setzero_ps();
    for (int r = 0; r < MR; ++r) {
      const BlockQ8& xb = x[r * blocks + blk];
      __m512i sum = acc[r];
      if (F::kBias != 0) sum = _mm512_sub_epi32(sum, _mm512_set1_epi32(F::kBias * xb.qsum));
      const __m512 scale = _mm512_mul_ps(d, _mm512_set1_ps(xb.d));
      out[r] = _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(sum), out[r]);
      if (F::kOffset) out[r] = _mm512_fmadd_ps(offset, _mm512_set1_ps(xb.sum), out[r]);
    }
  }
  const __mmask16 keep = static_cast<__mmask16>((1u << cols) - 1);
  for (int r = 0; r < MR; ++r) _mm512_mask_storeu_ps(y + r * y_stride, keep, out[r]);
}

template <typename F, int... MR>
void Rows(int mr, const uint8_t* a, const uint8_t* b, int64_t blocks, const BlockQ8* x, float* y,
          int64_t y_stride, int cols, std::integer_sequence<int, MR...>) {
  ((mr == MR + 1 ? PairTile<F, MR + 1>(a, b, blocks, x, y, y_stride, cols) : void()), ...);
}

// A panel of rows at a time (PanelRows), as in the AVX2 kernel: native_cpu_bench's
// 512x576x3072 Q4_1 multiply, 1 thread, AMD EPYC: 6.1-6.3 ms without panels, 5.9 ms with.
template <typename F>
void PackedGemm(const uint8_t* w, int64_t g_begin, int64_t g_end, int64_t n, const BlockQ8* x,
                int64_t rows, int64_t k, float* y, int64_t y_stride) {
  const int64_t blocks = k / 32;
  const int64_t group_bytes = blocks * F::kRecord;
  const int64_t panel = PanelRows(blocks, kTileRows);
  for (int64_t m0 = 0; m0 < rows; m0 += panel) {
    const int64_t m1 = std::min(rows, m0 + panel);
    for (int64_t g = g_begin; g < g_end; g += 2) {
      const bool pair = g + 1 < g_end;
      const uint8_t* a = w + g * group_bytes;
      const uint8_t* b = pair ? a + group_bytes : a;
      const int cols = static_cast<int>(std::min<int64_t>(pair ? 16 : 8, n - 8 * g));
      float* yg = y + 8 * g;
      for (int64_t m = m0; m < m1; m += kTileRows) {
        const int mr = static_cast<int>(std::min<int64_t>(kTileRows, m1 - m));
        Rows<F>(mr, a, b, blocks, x + m * blocks, yg + m * y_stride, y_stride, cols,
                std::make_integer_sequence<int, kTileRows>());
      }
    }
  }
}

#include "kiln/executors/native/cpu/quantize_scales.inc"

// 32 values at a time as avx2::QuantizeRowQ8 (kernels_avx2.cc) does them, on two 512-bit vectors:
// the same block maximum (max is exact in any order), scales from 8 blocks' maxima at once,
// rounding steps and sums, so the same blocks for finite values.
void QuantizeBlocks(const float* x, int64_t k, BlockQ8* out) {
  // Bit operations on the floats as integers (the float forms need AVX-512 DQ).
  const __m512i magnitude = _mm512_set1_epi32(0x7fffffff), sign = _mm512_set1_epi32(INT32_MIN);
  const __m512i one = _mm512_castps_si512(_mm512_set1_ps(1.0f));
  const auto abs = [&](__m512 v) {
    return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), magnitude));
  };
  const __m512 half = _mm512_set1_ps(0.5f);
  const int64_t blocks = k / 32;
  for (int64_t b0 = 0; b0 < blocks; b0 += 8) {
    const int count = static_cast<int>(std::min<int64_t>(8, blocks - b0));
    __m256 amax[8];
    for (int i = 0; i < 8; ++i) {
      amax[i] = _mm256_setzero_ps();
      if (i >= count) continue;
      const float* p = x + 32 * (b0 + i);
      const __m512 m = _mm512_max_ps(abs(_mm512_loadu_ps(p)), abs(_mm512_loadu_ps(p + 16)));
      amax[i] = _mm256_max_ps(_mm512_castps512_ps256(m),
                              _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(m), 1)));
    }
    float ds[8], invs[8];
    BlockScales(amax, ds, invs);
    for (int i = 0; i < count; ++i) {
      const int64_t b = b0 + i;
      const __m512 v[2] = {_mm512_loadu_ps(x + 32 * b), _mm512_loadu_ps(x + 32 * b + 16)};
      const float d = ds[i];
      const __m512 inv = _mm512_set1_ps(invs[i]);
      __m512i isum = _mm512_setzero_si512();
      for (int j = 0; j < 2; ++j) {
        // Round half away from zero: truncate, then step away from zero when the dropped fraction
        // (exact) is at least one half.
        const __m512 s = _mm512_mul_ps(v[j], inv);
        const __m512 t = _mm512_roundscale_ps(s, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
        const __mmask16 up = _mm512_cmp_ps_mask(abs(_mm512_sub_ps(s, t)), half, _CMP_GE_OQ);
        const __m512 step = _mm512_castsi512_ps(
            _mm512_or_si512(_mm512_and_si512(_mm512_castps_si512(s), sign), one));
        const __m512i q = _mm512_cvtps_epi32(_mm512_mask_add_ps(t, up, t, step));
        isum = _mm512_add_epi32(isum, q);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out[b].q + 16 * j), _mm512_cvtsepi32_epi8(q));
      }
      const int qsum = _mm512_reduce_add_epi32(isum);
      out[b].d = d;
      out[b].sum = d * static_cast<float>(qsum);
      out[b].qsum = qsum;
    }
  }
}

// The kernel of a packed weight type (quantized types only).
void PackedGemmOf(WeightType type, const uint8_t* w, int64_t g_begin, int64_t g_end, int64_t n,
                  const BlockQ8* x, int64_t rows, int64_t k, float* y, int64_t y_stride) {
  switch (type) {
    case WeightType::kQ8_0:
      return PackedGemm<Q8_0>(w, g_begin, g_end, n, x, rows, k, y, y_stride);
    case WeightType::kQ4_0:
      return PackedGemm<Q4_0>(w, g_begin, g_end, n, x, rows, k, y, y_stride);
    case WeightType::kQ4_1:
      return PackedGemm<Q4_1>(w, g_begin, g_end, n, x, rows, k, y, y_stride);
    case WeightType::kF32:
    case WeightType::kBF16:
    case WeightType::kF16:
      break;
  }
}

// The float weight matrix multiply (kernels.h: MatMul's definition for kF32, kBF16 and kF16):
// one packed record (a group's 8 rows x weights k, k + 1) widens to one 512-bit vector, lane 2r
// holding row r's even weight and lane 2r + 1 its odd one, against the activations k, k + 1
// broadcast as a pair. The avx2 kernel's operations per lane, so the same bits.
template <WeightType T>
inline __m512 Widen16(const uint8_t* p) {
  if constexpr (T == WeightType::kF32) {
    return _mm512_loadu_ps(p);
  } else {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    if constexpr (T == WeightType::kBF16) {
      return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    } else {
      return _mm512_cvtph_ps(h);
    }
  }
}

inline __m512 BroadcastPair(const float* x) {
  double pair;
  std::memcpy(&pair, x, 8);
  return _mm512_castpd_ps(_mm512_set1_pd(pair));
}

// Rows r's even + odd sums, r = 0..7.
inline __m256 PairSums(__m512 acc) {
  const __m512 s = _mm512_add_ps(acc, _mm512_permute_ps(acc, 0xB1));  // lane 2r: even + odd
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 0, 0, 0, 0, 0, 0, 0, 0);
  return _mm512_castps512_ps256(_mm512_permutexvar_ps(even, s));
}

// G groups (`group_bytes` apart) x M activation rows.
template <WeightType T, int G, int M>
void FloatTile(const uint8_t* w, int64_t group_bytes, const float* x, int64_t x_stride, int64_t k,
               float* y, int64_t y_stride, int64_t cols_in_last) {
  __m512 acc[M][G];
  for (int m = 0; m < M; ++m) {
    for (int g = 0; g < G; ++g) acc[m][g] = _mm512_setzero_ps();
  }
  for (int64_t i = 0; i < k; i += 2) {
    __m512 wv[G];
    for (int g = 0; g < G; ++g) {
      wv[g] = Widen16<T>(w + g * group_bytes + i * kPackRows * FloatTypeBytes(T));
    }
    for (int m = 0; m < M; ++m) {
      const __m512 xv = BroadcastPair(x + m * x_stride + i);
      for (int g = 0; g < G; ++g) acc[m][g] = _mm512_fmadd_ps(wv[g], xv, acc[m][g]);
    }
  }
  for (int m = 0; m < M; ++m) {
    for (int g = 0; g < G; ++g) {
      const __m256 sums = PairSums(acc[m][g]);
      float* out = y + m * y_stride + g * kPackRows;
      if (g < G - 1 || cols_in_last == kPackRows) {
        _mm256_storeu_ps(out, sums);
      } else {
        _mm256_mask_storeu_ps(out, static_cast<__mmask8>((1u << cols_in_last) - 1), sums);
      }
    }
  }
}

// Tile shapes for kernels_float_driver.inc.
constexpr int kDecodeGroups = 8;
constexpr int kTileGroups = 2;  // x kTileRows rows: 16 accumulators

#include "kiln/executors/native/cpu/kernels_float_driver.inc"

}  // namespace

void QuantizeRowQ8(const float* x, int64_t k, BlockQ8* out) { QuantizeBlocks(x, k, out); }

void PackedGemm(WeightType type, const uint8_t* w, int64_t g_begin, int64_t g_end, int64_t n,
                const BlockQ8* x, int64_t rows, int64_t k, float* y, int64_t y_stride) {
  PackedGemmOf(type, w, g_begin, g_end, n, x, rows, k, y, y_stride);
}

void FloatGemm(WeightType type, const uint8_t* w, int64_t g_begin, int64_t g_end, int64_t n,
               const float* x, int64_t rows, int64_t x_stride, int64_t k, float* y,
               int64_t y_stride) {
  FloatGemmOfType(type, w, g_begin, g_end, n, x, rows, x_stride, k, y, y_stride);
}

}  // namespace kiln::native::cpu::avx512
