// AVX2 kernels. The int8 dot products follow llama.cpp's x86 path: the weights' and the
// activations' bytes are multiplied by vpmaddubsw (unsigned x signed; a signed weight is made
// unsigned by taking its absolute value and moving its sign onto the activation), the 16-bit pair
// sums are widened to 8 int32 lanes by vpmaddwd, and each block's lanes are scaled and summed in
// float by one FMA. The integer part is exact, so only the per-block float order matters.
//
// Everything here has internal linkage but the entry points (see kernels_avx2.h for why).
#include "kiln/executors/native/cpu/kernels_avx2.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

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
//
// For the batched kernel (GemmImpl) each format also says how a weight block is unpacked into a
// panel (kVectors 32-byte vectors, its scale d and for Q4_1 its offset m) and how a panel block
// meets an activation block: Lanes gives the same 8 int32 sums of 4 products as Step's
// vpmaddubsw/vpmaddwd, which is all that the float part sees.
struct Q8_0 {
  static constexpr int kBytes = 34;
  static constexpr int kVectors = 2;  // |q| and q, whose sign moves onto the activations
  static constexpr bool kOffset = false;
  static constexpr bool kBias = false;
  static void Unpack(const uint8_t* w, __m256i* q, float* d, float*) {
    __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 2));
    q[0] = _mm256_sign_epi8(v, v);
    q[1] = v;
    *d = LoadHalf(w);
  }
  static __m256i Lanes(const __m256i* q, __m256i x, __m256i) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(q[0], _mm256_sign_epi8(x, q[1])),
                             _mm256_set1_epi16(1));
  }
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
  // The nibbles stay unsigned: sum (q - 8) x = sum q x - 8 sum x, whose last term (the bias, per
  // activation block) is computed once, so no per-output sign step is needed. Both are exact.
  static constexpr int kVectors = 1;
  static constexpr bool kOffset = false;
  static constexpr bool kBias = true;
  static void Unpack(const uint8_t* w, __m256i* q, float* d, float*) {
    q[0] = UnpackNibbles(w + 2);
    *d = LoadHalf(w);
  }
  static __m256i Lanes(const __m256i* q, __m256i x, __m256i bias) {
    return _mm256_sub_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(q[0], x), _mm256_set1_epi16(1)),
                            bias);
  }
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
  static constexpr int kVectors = 1;
  static constexpr bool kOffset = true;
  static constexpr bool kBias = false;
  static void Unpack(const uint8_t* w, __m256i* q, float* d, float* m) {
    q[0] = UnpackNibbles(w + 4);
    *d = LoadHalf(w);
    *m = LoadHalf(w + 2);
  }
  static __m256i Lanes(const __m256i* q, __m256i x, __m256i) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(q[0], x), _mm256_set1_epi16(1));
  }
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

// The batched kernel. A panel of up to kPanelCols weight rows is unpacked once (quants into
// 32-byte vectors, scales into floats) and then meets every activation row, in tiles of
// kTileRows activation rows x kTileCols weight rows whose accumulators stay in registers. Per
// output the float operations are DotRowsImpl's, in its order: for each block, the scale
// d * x.d (computed 8 outputs at a time by one exact vector multiply), one FMA of it with the
// converted int32 lanes into the even or the odd accumulator (all even blocks first, then all
// odd ones: the two chains are independent), Q4_1's offset FMAs likewise, then the same final
// sum.
constexpr int kPanelCols = 8;
constexpr int kTileRows = 4;
constexpr int kTileCols = 2;

struct alignas(32) Bytes32 {
  uint8_t b[32];
};

// Per thread, reused across calls so that the batched kernel allocates only when a shape grows.
struct Workspace {
  std::vector<Bytes32> quants;  // [blocks][kPanelCols][kVectors]
  std::vector<float> d;         // [blocks][kPanelCols]
  std::vector<float> m;         // [blocks][kPanelCols]
  std::vector<float> scales;    // [blocks][kTileRows][kPanelCols]
  std::vector<float> offsets;   // [kTileRows][kPanelCols]
  std::vector<Bytes32> bias;    // [rows][blocks]
};

thread_local Workspace workspace;

__m256i Load(const Bytes32& v) { return _mm256_load_si256(reinterpret_cast<const __m256i*>(&v)); }

template <typename Format, int MR, int NR>
void Tile(const Workspace& ws, int col, const BlockQ8* x, int64_t blocks, const Bytes32* bias,
          float* y, int64_t y_stride) {
  constexpr int V = Format::kVectors;
  __m256 sum[MR][NR];
  for (int parity = 0; parity < 2; ++parity) {
    __m256 acc[MR][NR];
    for (int r = 0; r < MR; ++r) {
      for (int j = 0; j < NR; ++j) acc[r][j] = _mm256_setzero_ps();
    }
    for (int64_t b = parity; b < blocks; b += 2) {
      __m256i w[NR][V];
      for (int j = 0; j < NR; ++j) {
        for (int v = 0; v < V; ++v) w[j][v] = Load(ws.quants[(b * kPanelCols + col + j) * V + v]);
      }
      const float* scale = &ws.scales[b * kTileRows * kPanelCols + col];
      for (int r = 0; r < MR; ++r) {
        __m256i xr = LoadQ(x[r * blocks + b]);
        __m256i br = Format::kBias ? Load(bias[r * blocks + b]) : _mm256_setzero_si256();
        for (int j = 0; j < NR; ++j) {
          __m256 lanes = _mm256_cvtepi32_ps(Format::Lanes(w[j], xr, br));
          acc[r][j] =
              _mm256_fmadd_ps(_mm256_broadcast_ss(&scale[r * kPanelCols + j]), lanes, acc[r][j]);
        }
      }
    }
    for (int r = 0; r < MR; ++r) {
      for (int j = 0; j < NR; ++j) {
        sum[r][j] = parity == 0 ? acc[r][j] : _mm256_add_ps(sum[r][j], acc[r][j]);
      }
    }
  }
  for (int r = 0; r < MR; ++r) {
    for (int j = 0; j < NR; ++j) {
      y[r * y_stride + j] = HorizontalSum(sum[r][j]) + ws.offsets[r * kPanelCols + col + j];
    }
  }
}

template <typename Format, int MR>
void TileCols(const Workspace& ws, int col, int cols, const BlockQ8* x, int64_t blocks,
              const Bytes32* bias, float* y, int64_t y_stride) {
  for (; col + kTileCols <= cols; col += kTileCols) {
    Tile<Format, MR, kTileCols>(ws, col, x, blocks, bias, y + col, y_stride);
  }
  if (col < cols) Tile<Format, MR, 1>(ws, col, x, blocks, bias, y + col, y_stride);
}

template <typename Format>
void GemmImpl(const uint8_t* w, size_t row_bytes, int64_t n_begin, int64_t n_end, const BlockQ8* x,
              int64_t rows, int64_t k, float* y, int64_t y_stride) {
  constexpr int V = Format::kVectors;
  const int64_t blocks = k / 32;
  Workspace& ws = workspace;
  ws.quants.resize(blocks * kPanelCols * V);
  ws.d.resize(blocks * kPanelCols);
  ws.m.resize(blocks * kPanelCols);
  ws.scales.resize(blocks * kTileRows * kPanelCols);
  ws.offsets.resize(kTileRows * kPanelCols);
  if (Format::kBias) {
    ws.bias.resize(rows * blocks);
    for (int64_t i = 0; i < rows * blocks; ++i) {
      __m256i sums = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(8), LoadQ(x[i])),
                                       _mm256_set1_epi16(1));
      _mm256_store_si256(reinterpret_cast<__m256i*>(&ws.bias[i]), sums);
    }
  }
  for (int64_t n0 = n_begin; n0 < n_end; n0 += kPanelCols) {
    const int cols = static_cast<int>(std::min<int64_t>(kPanelCols, n_end - n0));
    std::fill(ws.d.begin(), ws.d.end(), 0.0f);
    std::fill(ws.m.begin(), ws.m.end(), 0.0f);
    for (int j = 0; j < cols; ++j) {
      const uint8_t* row = w + (n0 + j) * row_bytes;
      for (int64_t b = 0; b < blocks; ++b) {
        __m256i q[V];
        Format::Unpack(row + b * Format::kBytes, q, &ws.d[b * kPanelCols + j],
                       &ws.m[b * kPanelCols + j]);
        for (int v = 0; v < V; ++v) {
          _mm256_store_si256(reinterpret_cast<__m256i*>(&ws.quants[(b * kPanelCols + j) * V + v]),
                             q[v]);
        }
      }
    }
    for (int64_t m0 = 0; m0 < rows; m0 += kTileRows) {
      const int mr = static_cast<int>(std::min<int64_t>(kTileRows, rows - m0));
      const BlockQ8* xm = x + m0 * blocks;
      for (int64_t b = 0; b < blocks; ++b) {
        __m256 d = _mm256_loadu_ps(&ws.d[b * kPanelCols]);
        for (int r = 0; r < mr; ++r) {
          _mm256_storeu_ps(&ws.scales[(b * kTileRows + r) * kPanelCols],
                           _mm256_mul_ps(d, _mm256_set1_ps(xm[r * blocks + b].d)));
        }
      }
      for (int r = 0; r < mr; ++r) {
        __m256 even = _mm256_setzero_ps(), odd = _mm256_setzero_ps();
        if (Format::kOffset) {
          for (int64_t b = 0; b < blocks; ++b) {
            __m256 m = _mm256_loadu_ps(&ws.m[b * kPanelCols]);
            __m256 s = _mm256_set1_ps(xm[r * blocks + b].sum);
            if (b % 2 == 0) {
              even = _mm256_fmadd_ps(m, s, even);
            } else {
              odd = _mm256_fmadd_ps(m, s, odd);
            }
          }
        }
        _mm256_storeu_ps(&ws.offsets[r * kPanelCols], _mm256_add_ps(even, odd));
      }
      const Bytes32* bias = Format::kBias ? &ws.bias[m0 * blocks] : nullptr;
      float* ym = y + m0 * y_stride + n0;
      switch (mr) {
        case 1:
          TileCols<Format, 1>(ws, 0, cols, xm, blocks, bias, ym, y_stride);
          break;
        case 2:
          TileCols<Format, 2>(ws, 0, cols, xm, blocks, bias, ym, y_stride);
          break;
        case 3:
          TileCols<Format, 3>(ws, 0, cols, xm, blocks, bias, ym, y_stride);
          break;
        default:
          TileCols<Format, 4>(ws, 0, cols, xm, blocks, bias, ym, y_stride);
          break;
      }
    }
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

}  // namespace kiln::native::cpu::avx2
