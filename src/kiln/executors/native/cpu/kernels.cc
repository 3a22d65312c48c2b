// The portable kernels, the dispatch between paths and the MatMul driver.
#include "kiln/executors/native/cpu/kernels.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kiln/base/half.h"
#include "kiln/executors/native/cpu/kernels_avx2.h"
#include "kiln/executors/native/cpu/kernels_avx512.h"
#include "kiln/executors/native/cpu/kernels_avxvnni.h"

namespace kiln::native::cpu {
namespace {

constexpr int64_t kBlock = 32;

// The AVX2 kernels (avx_vnni is the same path with another batched kernel) are reached only
// through here; a path the CPU lacks is a caller's bug (the path must come from SelectIsa),
// caught before an illegal instruction.
bool UseAvx2(Isa isa) {
  if (isa == Isa::kPortable) return false;
  if (!CanRun(isa)) {
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
    out[b].qsum = sum;
  }
}

// Packed record bytes per block and where each record's quants start.
int RecordBytes(WeightType type) {
  switch (type) {
    case WeightType::kQ8_0:
      return 16 + 256;
    case WeightType::kQ4_0:
      return 16 + 128;
    case WeightType::kQ4_1:
      return 32 + 128;
    case WeightType::kF32:
    case WeightType::kBF16:
    case WeightType::kF16:
      break;
  }
  return 0;
}

int QuantsOffset(WeightType type) { return type == WeightType::kQ4_1 ? 32 : 16; }

// Quant e (0..31) of row r (0..7) in a packed record's quants: its byte and, for the 4-bit
// types, whether it is the high nibble.
int QuantByte(WeightType type, int r, int e, bool* high) {
  if (type == WeightType::kQ8_0) {
    *high = false;
    return 32 * (e / 4) + 4 * r + e % 4;
  }
  *high = e >= 16;
  int low = e % 16;
  return 32 * (low / 4) + 4 * r + low % 4;
}

// The portable kernel of the packed formats: the definition in kernels.h, output by output.
void PackedGemmPortable(WeightType type, const uint8_t* w, int64_t g_begin, int64_t g_end,
                        int64_t n, const BlockQ8* x, int64_t rows, int64_t k, float* y,
                        int64_t y_stride) {
  const int64_t blocks = k / kBlock;
  const int record = RecordBytes(type);
  const int quants = QuantsOffset(type);
  for (int64_t g = g_begin; g < g_end; ++g) {
    const uint8_t* group = w + g * blocks * record;
    const int cols = static_cast<int>(std::min<int64_t>(kPackRows, n - kPackRows * g));
    for (int64_t m = 0; m < rows; ++m) {
      const BlockQ8* xm = x + m * blocks;
      for (int c = 0; c < cols; ++c) {
        float acc = 0.0f;
        for (int64_t b = 0; b < blocks; ++b) {
          const uint8_t* rec = group + b * record;
          int32_t sum = 0;
          for (int e = 0; e < kBlock; ++e) {
            bool high;
            uint8_t byte = rec[quants + QuantByte(type, c, e, &high)];
            int q = type == WeightType::kQ8_0 ? static_cast<int8_t>(byte)
                                              : (high ? byte >> 4 : byte & 0x0f);
            sum += q * xm[b].q[e];
          }
          if (type == WeightType::kQ4_0) sum -= 8 * xm[b].qsum;
          const float scale = LoadHalf(rec + 2 * c) * xm[b].d;
          acc = std::fma(scale, static_cast<float>(sum), acc);
          if (type == WeightType::kQ4_1) acc = std::fma(LoadHalf(rec + 16 + 2 * c), xm[b].sum, acc);
        }
        y[m * y_stride + kPackRows * g + c] = acc;
      }
    }
  }
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

// A float type's weight at p, widened to f32 (exact).
float LoadWeight(WeightType type, const uint8_t* p) {
  if (type == WeightType::kF32) {
    float f;
    std::memcpy(&f, p, 4);
    return f;
  }
  uint16_t h;
  std::memcpy(&h, p, 2);
  return type == WeightType::kF16 ? Fp16ToFloat(h) : Bf16ToFloat(h);
}

// MatMul's definition for the float types over groups [g_begin, g_end) of a packed matrix of n
// columns: the even and the odd running sums of each output, then their sum.
void FloatGemmPortable(WeightType type, const uint8_t* w, int64_t g_begin, int64_t g_end, int64_t n,
                       const float* x, int64_t rows, int64_t x_stride, int64_t k, float* y,
                       int64_t y_stride) {
  const int es = FloatTypeBytes(type);
  for (int64_t g = g_begin; g < g_end; ++g) {
    const uint8_t* group = w + g * kPackRows * k * es;
    const int64_t cols = std::min<int64_t>(kPackRows, n - kPackRows * g);
    for (int64_t m = 0; m < rows; ++m) {
      const float* xm = x + m * x_stride;
      for (int64_t c = 0; c < cols; ++c) {
        float even = 0.0f, odd = 0.0f;
        for (int64_t i = 0; i < k; i += 2) {
          const uint8_t* pair = group + (i * kPackRows + 2 * c) * es;
          even = std::fma(LoadWeight(type, pair), xm[i], even);
          odd = std::fma(LoadWeight(type, pair + es), xm[i + 1], odd);
        }
        y[m * y_stride + kPackRows * g + c] = even + odd;
      }
    }
  }
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

using PackedGemmFn = void (*)(WeightType type, const uint8_t* w, int64_t g_begin, int64_t g_end,
                              int64_t n, const BlockQ8* x, int64_t rows, int64_t k, float* y,
                              int64_t y_stride);

PackedGemmFn SimdPackedGemm(Isa isa) {
  if (isa == Isa::kAvx512) return avx512::PackedGemm;
  return isa == Isa::kAvxVnni ? avxvnni::PackedGemm : avx2::PackedGemm;
}

using FloatGemmFn = void (*)(WeightType type, const uint8_t* w, int64_t g_begin, int64_t g_end,
                             int64_t n, const float* x, int64_t rows, int64_t x_stride, int64_t k,
                             float* y, int64_t y_stride);

FloatGemmFn SelectFloatGemm(Isa isa) {
  if (!UseAvx2(isa)) return FloatGemmPortable;
  return isa == Isa::kAvx512 ? avx512::FloatGemm : avx2::FloatGemm;
}

// Work is split by groups of 8 output columns, the matrices' groups one after another, in one
// pass over the pool; `run(o, from, to)` computes groups [from, to) of o's matrix. At one row
// the weights are nearly all the bytes moved and the kernels stream them; from 2 rows on each
// loaded weight vector meets several rows.
template <typename Run>
void ForEachGroupRange(ThreadPool& pool, std::span<const MatMulOutput> outs, const Run& run) {
  int64_t total = 0;
  for (const MatMulOutput& o : outs) total += (o.w->rows + kPackRows - 1) / kPackRows;
  pool.ParallelFor(total, [&](int64_t begin, int64_t end) {
    int64_t offset = 0;  // the first group of the matrix at hand
    for (const MatMulOutput& o : outs) {
      const int64_t groups = (o.w->rows + kPackRows - 1) / kPackRows;
      const int64_t from = std::max(begin, offset) - offset;
      const int64_t to = std::min(end, offset + groups) - offset;
      offset += groups;
      if (from < to) run(o, from, to);
    }
  });
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
    case WeightType::kBF16:
      return "bf16";
    case WeightType::kF16:
      return "f16";
  }
  return "unknown";
}

bool IsFloatType(WeightType type) {
  return type == WeightType::kF32 || type == WeightType::kBF16 || type == WeightType::kF16;
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
    case WeightType::kBF16:
    case WeightType::kF16:
      return static_cast<size_t>(cols) * 2;
  }
  return 0;
}

size_t PackedBytes(WeightType type, int64_t rows, int64_t cols) {
  const int64_t groups = (rows + kPackRows - 1) / kPackRows;
  if (IsFloatType(type))
    return static_cast<size_t>(groups * kPackRows * cols * FloatTypeBytes(type));
  return static_cast<size_t>(groups * (cols / kBlock) * RecordBytes(type));
}

void PackWeights(WeightType type, int64_t rows, int64_t cols, const uint8_t* gguf_rows,
                 uint8_t* out) {
  if (IsFloatType(type)) {
    const int es = FloatTypeBytes(type);
    std::memset(out, 0, PackedBytes(type, rows, cols));
    for (int64_t n = 0; n < rows; ++n) {
      uint8_t* group = out + (n / kPackRows) * kPackRows * cols * es;
      const int64_t r = n % kPackRows;
      for (int64_t i = 0; i < cols; i += 2) {
        std::memcpy(group + (i * kPackRows + 2 * r) * es, gguf_rows + (n * cols + i) * es, 2 * es);
      }
    }
    return;
  }
  const int64_t blocks = cols / kBlock;
  const int record = RecordBytes(type);
  const int quants = QuantsOffset(type);
  const size_t row_bytes = RowBytes(type, cols);
  const int block_bytes = static_cast<int>(RowBytes(type, kBlock));
  std::memset(out, 0, PackedBytes(type, rows, cols));
  for (int64_t n = 0; n < rows; ++n) {
    const int64_t g = n / kPackRows;
    const int r = static_cast<int>(n % kPackRows);
    for (int64_t b = 0; b < blocks; ++b) {
      const uint8_t* src = gguf_rows + n * row_bytes + b * block_bytes;
      uint8_t* rec = out + (g * blocks + b) * record;
      std::memcpy(rec + 2 * r, src, 2);                                          // d
      if (type == WeightType::kQ4_1) std::memcpy(rec + 16 + 2 * r, src + 2, 2);  // m
      const uint8_t* q = src + (type == WeightType::kQ4_1 ? 4 : 2);
      for (int e = 0; e < kBlock; ++e) {
        bool high;
        uint8_t& byte = rec[quants + QuantByte(type, r, e, &high)];
        if (type == WeightType::kQ8_0) {
          byte = q[e];
        } else {
          uint8_t nibble = e < 16 ? q[e] & 0x0f : q[e - 16] >> 4;
          byte |= high ? static_cast<uint8_t>(nibble << 4) : nibble;
        }
      }
    }
  }
}

void QuantizeRowsInt8(const float* w, int64_t rows, int64_t cols, uint8_t* q8_0_rows) {
  const size_t row_bytes = RowBytes(WeightType::kQ8_0, cols);
  for (int64_t n = 0; n < rows; ++n) {
    const float* row = w + n * cols;
    float amax = 0.0f;
    for (int64_t i = 0; i < cols; ++i) amax = std::max(amax, std::fabs(row[i]));
    const uint16_t half = FloatToFp16(amax / 127.0f);
    const float d = Fp16ToFloat(half);
    const float inv = d != 0.0f ? 1.0f / d : 0.0f;
    uint8_t* out = q8_0_rows + n * row_bytes;
    for (int64_t b = 0; b < cols / kBlock; ++b, out += 34) {
      std::memcpy(out, &half, 2);
      for (int j = 0; j < kBlock; ++j) {
        const float q = std::round(row[b * kBlock + j] * inv);
        out[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(std::clamp(q, -127.0f, 127.0f)));
      }
    }
  }
}

void UnpackRow(const WeightMatrix& w, int64_t n, uint8_t* gguf_row) {
  if (IsFloatType(w.type)) {
    const int es = FloatTypeBytes(w.type);
    const uint8_t* group = w.data + (n / kPackRows) * kPackRows * w.cols * es;
    const int64_t r = n % kPackRows;
    for (int64_t i = 0; i < w.cols; i += 2) {
      std::memcpy(gguf_row + i * es, group + (i * kPackRows + 2 * r) * es, 2 * es);
    }
    return;
  }
  const int64_t blocks = w.cols / kBlock;
  const int record = RecordBytes(w.type);
  const int quants = QuantsOffset(w.type);
  const int block_bytes = static_cast<int>(RowBytes(w.type, kBlock));
  const int64_t g = n / kPackRows;
  const int r = static_cast<int>(n % kPackRows);
  for (int64_t b = 0; b < blocks; ++b) {
    const uint8_t* rec = w.data + (g * blocks + b) * record;
    uint8_t* dst = gguf_row + b * block_bytes;
    std::memcpy(dst, rec + 2 * r, 2);
    if (w.type == WeightType::kQ4_1) std::memcpy(dst + 2, rec + 16 + 2 * r, 2);
    uint8_t* q = dst + (w.type == WeightType::kQ4_1 ? 4 : 2);
    if (w.type != WeightType::kQ8_0) std::memset(q, 0, 16);
    for (int e = 0; e < kBlock; ++e) {
      bool high;
      const uint8_t byte = rec[quants + QuantByte(w.type, r, e, &high)];
      if (w.type == WeightType::kQ8_0) {
        q[e] = byte;
      } else {
        const uint8_t nibble = high ? byte >> 4 : byte & 0x0f;
        q[e % 16] |= e < 16 ? nibble : static_cast<uint8_t>(nibble << 4);
      }
    }
  }
}

void QuantizeRowQ8(Isa isa, const float* x, int64_t k, BlockQ8* out) {
  if (isa == Isa::kAvx512) return avx512::QuantizeRowQ8(x, k, out);
  if (UseAvx2(isa)) return avx2::QuantizeRowQ8(x, k, out);
  QuantizeRowQ8Portable(x, k, out);
}

float ExpSubMaxSum(Isa isa, float* x, int64_t n, float max) {
  if (UseAvx2(isa)) return avx2::ExpSubMaxSum(x, n, max);
  return ExpSubMaxSumPortable(x, n, max);
}

void SiluMul(Isa isa, float* gate, const float* up, int64_t n) {
  if (UseAvx2(isa)) return avx2::SiluMul(gate, up, n);
  for (int64_t i = 0; i < n; ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void GeluTanhMul(Isa isa, float* gate, const float* up, int64_t n) {
  if (UseAvx2(isa)) return avx2::GeluTanhMul(gate, up, n);
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    const float t = -2.0f * kGeluK * std::fma(kGeluCube, g * g * g, g);
    gate[i] = g / (1.0f + std::exp(std::min(t, 88.0f))) * up[i];
  }
}

void AxpyF32(Isa isa, float a, const float* x, float* y, int64_t n) {
  if (UseAvx2(isa)) return avx2::AxpyF32(a, x, y, n);
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

void AttentionScores(Isa isa, const float* const* k_rows, const float* q, int64_t queries,
                     int64_t count, int64_t hd, float scale, float* scores, int64_t scores_stride) {
  if (UseAvx2(isa) && hd > 0 && hd % 8 == 0) {
    return avx2::AttentionScores(k_rows, q, queries, count, hd, scale, scores, scores_stride);
  }
  for (int64_t n = 0; n < queries; ++n) {
    for (int64_t p = 0; p < count; ++p) {
      scores[n * scores_stride + p] = DotF32Portable(k_rows[p], q + n * hd, hd) * scale;
    }
  }
}

void AttentionValues(Isa isa, const float* const* v_rows, const float* w, int64_t w_stride,
                     int64_t queries, int64_t count, int64_t hd, float* out) {
  if (UseAvx2(isa) && hd > 0 && hd % 8 == 0) {
    return avx2::AttentionValues(v_rows, w, w_stride, queries, count, hd, out);
  }
  std::fill(out, out + queries * hd, 0.0f);
  for (int64_t n = 0; n < queries; ++n) {
    for (int64_t p = 0; p < count; ++p) {
      for (int64_t i = 0; i < hd; ++i) out[n * hd + i] += w[n * w_stride + p] * v_rows[p][i];
    }
  }
}

namespace {

// The portable path widens each bf16 row into a buffer and takes the f32 kernels.
void WidenRows(const uint16_t* const* rows, int64_t count, int64_t hd, std::vector<float>* buf,
               std::vector<const float*>* ptrs) {
  buf->resize(count * hd);
  ptrs->resize(count);
  for (int64_t p = 0; p < count; ++p) {
    for (int64_t i = 0; i < hd; ++i) (*buf)[p * hd + i] = Bf16ToFloat(rows[p][i]);
    (*ptrs)[p] = &(*buf)[p * hd];
  }
}

}  // namespace

void AttentionScoresBf16(Isa isa, const uint16_t* const* k_rows, const float* q, int64_t queries,
                         int64_t count, int64_t hd, float scale, float* scores,
                         int64_t scores_stride) {
  if (UseAvx2(isa) && hd > 0 && hd % 8 == 0) {
    return avx2::AttentionScoresBf16(k_rows, q, queries, count, hd, scale, scores, scores_stride);
  }
  std::vector<float> buf;
  std::vector<const float*> rows;
  WidenRows(k_rows, count, hd, &buf, &rows);
  AttentionScores(isa, rows.data(), q, queries, count, hd, scale, scores, scores_stride);
}

void AttentionValuesBf16(Isa isa, const uint16_t* const* v_rows, const float* w, int64_t w_stride,
                         int64_t queries, int64_t count, int64_t hd, float* out) {
  if (UseAvx2(isa) && hd > 0 && hd % 8 == 0) {
    return avx2::AttentionValuesBf16(v_rows, w, w_stride, queries, count, hd, out);
  }
  std::vector<float> buf;
  std::vector<const float*> rows;
  WidenRows(v_rows, count, hd, &buf, &rows);
  AttentionValues(isa, rows.data(), w, w_stride, queries, count, hd, out);
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
  const MatMulOutput out{&w, y, y_stride};
  MatMulMany(pool, isa, {&out, 1}, x, rows, x_stride, scratch);
}

void MatMulMany(ThreadPool& pool, Isa isa, std::span<const MatMulOutput> outs, const float* x,
                int64_t rows, int64_t x_stride, MatMulScratch* scratch) {
  if (rows <= 0 || outs.empty()) return;
  const bool avx2 = UseAvx2(isa);
  const int64_t k = outs[0].w->cols;
  const WeightType type = outs[0].w->type;
  for (const MatMulOutput& o : outs) {
    if (o.w->type != type || o.w->cols != k) {
      // Unlike matrices go one at a time.
      for (const MatMulOutput& each : outs)
        MatMulMany(pool, isa, {&each, 1}, x, rows, x_stride, scratch);
      return;
    }
  }

  // The float types read the activations as they are.
  if (IsFloatType(type)) {
    FloatGemmFn gemm = SelectFloatGemm(isa);
    ForEachGroupRange(pool, outs, [&](const MatMulOutput& o, int64_t from, int64_t to) {
      gemm(type, o.w->data, from, to, o.w->rows, x, rows, x_stride, k, o.y, o.y_stride);
    });
    return;
  }

  const int64_t blocks = k / kBlock;
  scratch->Reserve(static_cast<size_t>(rows * blocks));
  BlockQ8* xq = scratch->blocks;
  auto quantize = isa == Isa::kAvx512 ? avx512::QuantizeRowQ8
                  : avx2              ? avx2::QuantizeRowQ8
                                      : QuantizeRowQ8Portable;
  // Rows are quantized independently, so spreading them over threads changes no bit.
  if (rows * k >= 16384) {
    pool.ParallelFor(rows, [&](int64_t begin, int64_t end) {
      for (int64_t m = begin; m < end; ++m) quantize(x + m * x_stride, k, xq + m * blocks);
    });
  } else {
    for (int64_t m = 0; m < rows; ++m) quantize(x + m * x_stride, k, xq + m * blocks);
  }

  PackedGemmFn gemm = avx2 ? SimdPackedGemm(isa) : PackedGemmPortable;
  ForEachGroupRange(pool, outs, [&](const MatMulOutput& o, int64_t from, int64_t to) {
    gemm(type, o.w->data, from, to, o.w->rows, xq, rows, k, o.y, o.y_stride);
  });
}

}  // namespace kiln::native::cpu
