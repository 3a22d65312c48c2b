// The portable kernels, the dispatch between paths and the MatMul driver.
#include "kiln/executors/native/cpu/kernels.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "kiln/base/half.h"
#include "kiln/executors/native/cpu/kernels_avx2.h"
#include "kiln/executors/native/cpu/kernels_avxvnni.h"

namespace kiln::native::cpu {
namespace {

constexpr int64_t kBlock = 32;

// The AVX2 kernels (avx_vnni is the same path with another batched kernel) are reached only
// through here; a path the CPU lacks is a caller's bug (the path must come from SelectIsa),
// caught before an illegal instruction.
bool UseAvx2(Isa isa) {
  if (isa == Isa::kPortable) return false;
  static const Isa best = BestIsa();
  if (static_cast<int>(isa) > static_cast<int>(best)) {
    std::fprintf(stderr, "kiln: the %s kernels were asked for on a CPU that lacks them\n",
                 IsaName(isa));
    std::abort();
  }
  return true;
}

float LoadHalf(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return Fp16ToFloat(h);
}

void QuantizeRowQ8Portable(const float* x, int64_t k, BlockQ8* out) {
  for (int64_t b = 0; b < k / kBlock; ++b) {
    const float* p = x + kBlock * b;
    float amax = 0.0f;
    for (int j = 0; j < kBlock; ++j) amax = std::max(amax, std::fabs(p[j]));
    float d = amax / 127.0f;
    float inv = d != 0.0f ? 1.0f / d : 0.0f;
    int sum = 0;
    for (int j = 0; j < kBlock; ++j) {
      int q = static_cast<int>(std::round(p[j] * inv));
      out[b].q[j] = static_cast<int8_t>(q);
      sum += q;
    }
    out[b].d = d;
    out[b].sum = d * static_cast<float>(sum);
  }
}

float DotQ8_0Portable(const uint8_t* w, const BlockQ8* x, int64_t k) {
  float acc = 0.0f;
  for (int64_t b = 0; b < k / kBlock; ++b, w += 34) {
    const int8_t* q = reinterpret_cast<const int8_t*>(w + 2);
    int32_t sum = 0;
    for (int j = 0; j < kBlock; ++j) sum += q[j] * x[b].q[j];
    acc += LoadHalf(w) * x[b].d * static_cast<float>(sum);
  }
  return acc;
}

float DotQ4_0Portable(const uint8_t* w, const BlockQ8* x, int64_t k) {
  float acc = 0.0f;
  for (int64_t b = 0; b < k / kBlock; ++b, w += 18) {
    const uint8_t* qs = w + 2;
    int32_t sum = 0;
    for (int j = 0; j < 16; ++j) {
      sum += ((qs[j] & 0x0f) - 8) * x[b].q[j] + ((qs[j] >> 4) - 8) * x[b].q[j + 16];
    }
    acc += LoadHalf(w) * x[b].d * static_cast<float>(sum);
  }
  return acc;
}

float DotQ4_1Portable(const uint8_t* w, const BlockQ8* x, int64_t k) {
  float acc = 0.0f;
  float offset = 0.0f;
  for (int64_t b = 0; b < k / kBlock; ++b, w += 20) {
    const uint8_t* qs = w + 4;
    int32_t sum = 0;
    for (int j = 0; j < 16; ++j) {
      sum += (qs[j] & 0x0f) * x[b].q[j] + (qs[j] >> 4) * x[b].q[j + 16];
    }
    acc += LoadHalf(w) * x[b].d * static_cast<float>(sum);
    offset += LoadHalf(w + 2) * x[b].sum;
  }
  return acc + offset;
}

// Eight running sums, so the compiler can keep them in vector registers without reordering.
float DotF32Portable(const float* w, const float* x, int64_t k) {
  float acc[8] = {};
  int64_t i = 0;
  for (; i + 8 <= k; i += 8) {
    for (int j = 0; j < 8; ++j) acc[j] += w[i + j] * x[i + j];
  }
  for (; i < k; ++i) acc[0] += w[i] * x[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// Cephes' expf: exp(r) for |r| <= ln(2) / 2 after taking out n = round(x / ln 2).
constexpr float kLog2e = 1.44269504088896341f, kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
constexpr float kExpPoly[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                               4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};
// Below this, exp underflows; clamping keeps 2^n a normal number.
constexpr float kExpMin = -87.0f;

float ExpPortable(float x) {
  x = std::max(x, kExpMin);
  const float n = std::nearbyint(x * kLog2e);
  float r = x - n * kLn2Hi;
  r = r - n * kLn2Lo;
  float p = kExpPoly[0];
  for (int i = 1; i < 6; ++i) p = p * r + kExpPoly[i];
  p = p * (r * r) + (r + 1.0f);
  return std::ldexp(p, static_cast<int>(n));
}

float ExpSubMaxSumPortable(float* x, int64_t n, float max) {
  float acc[8] = {};
  for (int64_t i = 0; i < n; ++i) {
    x[i] = ExpPortable(x[i] - max);
    acc[i % 8] += x[i];
  }
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

using DotFn = float (*)(const uint8_t* w, const BlockQ8* x, int64_t k);
using DotRowsFn = void (*)(const uint8_t* w, const BlockQ8* x, int64_t x_stride, int rows,
                           int64_t k, float* y, int64_t y_stride);
using GemmFn = void (*)(const uint8_t* w, size_t row_bytes, int64_t n_begin, int64_t n_end,
                        const BlockQ8* x, int64_t rows, int64_t k, float* y, int64_t y_stride);

DotFn PortableDot(WeightType type) {
  switch (type) {
    case WeightType::kQ8_0:
      return DotQ8_0Portable;
    case WeightType::kQ4_0:
      return DotQ4_0Portable;
    case WeightType::kQ4_1:
      return DotQ4_1Portable;
    case WeightType::kF32:
      break;
  }
  return nullptr;
}

DotRowsFn Avx2DotRows(WeightType type) {
  switch (type) {
    case WeightType::kQ8_0:
      return avx2::DotRowsQ8_0;
    case WeightType::kQ4_0:
      return avx2::DotRowsQ4_0;
    case WeightType::kQ4_1:
      return avx2::DotRowsQ4_1;
    case WeightType::kF32:
      break;
  }
  return nullptr;
}

GemmFn Avx2Gemm(Isa isa, WeightType type) {
  if (isa == Isa::kAvxVnni) {
    switch (type) {
      case WeightType::kQ8_0:
        return avxvnni::GemmQ8_0;
      case WeightType::kQ4_0:
        return avxvnni::GemmQ4_0;
      case WeightType::kQ4_1:
        return avxvnni::GemmQ4_1;
      case WeightType::kF32:
        break;
    }
    return nullptr;
  }
  switch (type) {
    case WeightType::kQ8_0:
      return avx2::GemmQ8_0;
    case WeightType::kQ4_0:
      return avx2::GemmQ4_0;
    case WeightType::kQ4_1:
      return avx2::GemmQ4_1;
    case WeightType::kF32:
      break;
  }
  return nullptr;
}

float DotQuantized(Isa isa, WeightType type, const uint8_t* w, const BlockQ8* x, int64_t k) {
  if (UseAvx2(isa)) {
    float y;
    Avx2DotRows(type)(w, x, 0, 1, k, &y, 0);
    return y;
  }
  return PortableDot(type)(w, x, k);
}

}  // namespace

const char* WeightTypeName(WeightType type) {
  switch (type) {
    case WeightType::kF32:
      return "f32";
    case WeightType::kQ8_0:
      return "q8_0";
    case WeightType::kQ4_0:
      return "q4_0";
    case WeightType::kQ4_1:
      return "q4_1";
  }
  return "unknown";
}

size_t RowBytes(WeightType type, int64_t cols) {
  size_t blocks = static_cast<size_t>(cols / kBlock);
  switch (type) {
    case WeightType::kF32:
      return static_cast<size_t>(cols) * sizeof(float);
    case WeightType::kQ8_0:
      return blocks * 34;
    case WeightType::kQ4_0:
      return blocks * 18;
    case WeightType::kQ4_1:
      return blocks * 20;
  }
  return 0;
}

void QuantizeRowQ8(Isa isa, const float* x, int64_t k, BlockQ8* out) {
  if (UseAvx2(isa)) return avx2::QuantizeRowQ8(x, k, out);
  QuantizeRowQ8Portable(x, k, out);
}

float DotQ8_0(Isa isa, const uint8_t* w, const BlockQ8* x, int64_t k) {
  return DotQuantized(isa, WeightType::kQ8_0, w, x, k);
}

float DotQ4_0(Isa isa, const uint8_t* w, const BlockQ8* x, int64_t k) {
  return DotQuantized(isa, WeightType::kQ4_0, w, x, k);
}

float DotQ4_1(Isa isa, const uint8_t* w, const BlockQ8* x, int64_t k) {
  return DotQuantized(isa, WeightType::kQ4_1, w, x, k);
}

float DotF32(Isa isa, const float* w, const float* x, int64_t k) {
  if (UseAvx2(isa)) return avx2::DotF32(w, x, k);
  return DotF32Portable(w, x, k);
}

float ExpSubMaxSum(Isa isa, float* x, int64_t n, float max) {
  if (UseAvx2(isa)) return avx2::ExpSubMaxSum(x, n, max);
  return ExpSubMaxSumPortable(x, n, max);
}

void AxpyF32(Isa isa, float a, const float* x, float* y, int64_t n) {
  if (UseAvx2(isa)) return avx2::AxpyF32(a, x, y, n);
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

void AttentionScores(Isa isa, const float* const* k_rows, const float* q, int64_t count, int64_t hd,
                     float scale, float* scores) {
  if (UseAvx2(isa) && hd % 8 == 0)
    return avx2::AttentionScores(k_rows, q, count, hd, scale, scores);
  for (int64_t p = 0; p < count; ++p) scores[p] = DotF32Portable(k_rows[p], q, hd) * scale;
}

void AttentionValues(Isa isa, const float* const* v_rows, const float* w, int64_t count, int64_t hd,
                     float* out) {
  if (UseAvx2(isa) && hd % 8 == 0) return avx2::AttentionValues(v_rows, w, count, hd, out);
  std::fill(out, out + hd, 0.0f);
  for (int64_t p = 0; p < count; ++p) {
    for (int64_t i = 0; i < hd; ++i) out[i] += w[p] * v_rows[p][i];
  }
}

MatMulScratch::~MatMulScratch() { delete[] blocks; }

void MatMulScratch::Reserve(size_t num_blocks) {
  if (num_blocks <= capacity) return;
  delete[] blocks;
  blocks = new BlockQ8[num_blocks];
  capacity = num_blocks;
}

void MatMul(ThreadPool& pool, Isa isa, const WeightMatrix& w, const float* x, int64_t rows,
            int64_t x_stride, float* y, int64_t y_stride, MatMulScratch* scratch) {
  if (rows <= 0 || w.rows <= 0) return;
  const bool avx2 = UseAvx2(isa);
  const int64_t k = w.cols;
  const size_t row_bytes = RowBytes(w.type, k);

  // Each weight row is read once and applied to every activation row while it is in L1: at
  // small batch the weights are nearly all the bytes moved.
  if (w.type == WeightType::kF32) {
    auto dot = avx2 ? avx2::DotF32 : DotF32Portable;
    pool.ParallelFor(w.rows, [&](int64_t begin, int64_t end) {
      for (int64_t n = begin; n < end; ++n) {
        const float* wn = reinterpret_cast<const float*>(w.data + n * row_bytes);
        for (int64_t m = 0; m < rows; ++m) y[m * y_stride + n] = dot(wn, x + m * x_stride, k);
      }
    });
    return;
  }

  const int64_t blocks = k / kBlock;
  scratch->Reserve(static_cast<size_t>(rows * blocks));
  BlockQ8* xq = scratch->blocks;
  auto quantize = avx2 ? avx2::QuantizeRowQ8 : QuantizeRowQ8Portable;
  // Rows are quantized independently, so spreading them over threads changes no bit.
  if (rows * k >= 16384) {
    pool.ParallelFor(rows, [&](int64_t begin, int64_t end) {
      for (int64_t m = begin; m < end; ++m) quantize(x + m * x_stride, k, xq + m * blocks);
    });
  } else {
    for (int64_t m = 0; m < rows; ++m) quantize(x + m * x_stride, k, xq + m * blocks);
  }

  // One row streams the weights through the one-row kernel (bandwidth-bound, it prefetches);
  // more rows go to the tiled kernel (compute-bound). Both give each output the same bits.
  if (avx2 && rows == 1) {
    DotRowsFn dot_rows = Avx2DotRows(w.type);
    pool.ParallelFor(w.rows, [&](int64_t begin, int64_t end) {
      for (int64_t n = begin; n < end; ++n) dot_rows(w.data + n * row_bytes, xq, 0, 1, k, y + n, 0);
    });
    return;
  }
  if (avx2) {
    GemmFn gemm = Avx2Gemm(isa, w.type);
    pool.ParallelFor(w.rows, [&](int64_t begin, int64_t end) {
      gemm(w.data, row_bytes, begin, end, xq, rows, k, y, y_stride);
    });
    return;
  }
  DotFn dot = PortableDot(w.type);
  pool.ParallelFor(w.rows, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      const uint8_t* wn = w.data + n * row_bytes;
      for (int64_t m = 0; m < rows; ++m) y[m * y_stride + n] = dot(wn, xq + m * blocks, k);
    }
  });
}

}  // namespace kiln::native::cpu
