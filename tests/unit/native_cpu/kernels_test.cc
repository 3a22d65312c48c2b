#include "kiln/executors/native/cpu/kernels.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>
#include <random>
#include <vector>

#include "kiln/base/half.h"

namespace kiln::native::cpu {
namespace {

constexpr WeightType kQuantizedTypes[] = {WeightType::kQ8_0, WeightType::kQ4_0, WeightType::kQ4_1};
constexpr WeightType kAllTypes[] = {WeightType::kF32,  WeightType::kQ8_0, WeightType::kQ4_0,
                                    WeightType::kQ4_1, WeightType::kBF16, WeightType::kF16};

// The paths this machine runs: portable always, avx2 where the CPU has it.
std::vector<Isa> Paths() {
  std::vector<Isa> paths = {Isa::kPortable};
  for (Isa isa : {Isa::kAvx2, Isa::kAvxVnni, Isa::kAvx512}) {
    if (CanRun(isa)) paths.push_back(isa);
  }
  return paths;
}

void PutHalf(uint8_t* p, float value) {
  uint16_t h = FloatToFp16(value);
  std::memcpy(p, &h, 2);
}

float GetHalf(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return Fp16ToFloat(h);
}

// Random weights in `type`'s GGUF layout: every byte pattern of the quants, scales of the size
// real models have.
std::vector<uint8_t> RandomWeights(WeightType type, int64_t rows, int64_t cols, std::mt19937& rng) {
  std::vector<uint8_t> data(rows * RowBytes(type, cols));
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(0.001f, 0.05f);
  std::uniform_real_distribution<float> offset(-0.4f, 0.1f);
  std::normal_distribution<float> normal(0.0f, 0.5f);
  uint8_t* p = data.data();
  if (type == WeightType::kF32) {
    for (int64_t i = 0; i < rows * cols; ++i) {
      float v = normal(rng);
      std::memcpy(p + 4 * i, &v, 4);
    }
    return data;
  }
  if (type == WeightType::kBF16 || type == WeightType::kF16) {
    // Random bit patterns of finite values (subnormals included), and now and then an exact 0.
    std::uniform_int_distribution<int> exponent_bits(0, type == WeightType::kF16 ? 0x1a : 0x7e);
    for (int64_t i = 0; i < rows * cols; ++i) {
      uint16_t h = static_cast<uint16_t>(byte(rng) | byte(rng) << 8);
      if (type == WeightType::kF16) {
        h = static_cast<uint16_t>((h & 0x83ff) | exponent_bits(rng) << 10);
      } else {
        h = static_cast<uint16_t>((h & 0x807f) | exponent_bits(rng) << 7);
      }
      if (i % 61 == 0) h = 0;
      std::memcpy(p + 2 * i, &h, 2);
    }
    return data;
  }
  for (int64_t b = 0; b < rows * cols / 32; ++b) {
    switch (type) {
      case WeightType::kQ8_0:
        PutHalf(p, scale(rng));
        for (int j = 0; j < 32; ++j) p[2 + j] = static_cast<uint8_t>(byte(rng));
        p += 34;
        break;
      case WeightType::kQ4_0:
        PutHalf(p, scale(rng));
        for (int j = 0; j < 16; ++j) p[2 + j] = static_cast<uint8_t>(byte(rng));
        p += 18;
        break;
      case WeightType::kQ4_1:
        PutHalf(p, scale(rng));
        PutHalf(p + 2, offset(rng));
        for (int j = 0; j < 16; ++j) p[4 + j] = static_cast<uint8_t>(byte(rng));
        p += 20;
        break;
      case WeightType::kF32:
      case WeightType::kBF16:
      case WeightType::kF16:
        break;
    }
  }
  return data;
}

// Float weight j of a row, widened.
float Widen(WeightType type, const uint8_t* row, int64_t j) {
  if (type == WeightType::kF32) {
    float f;
    std::memcpy(&f, row + 4 * j, 4);
    return f;
  }
  uint16_t h;
  std::memcpy(&h, row + 2 * j, 2);
  return type == WeightType::kF16 ? Fp16ToFloat(h) : Bf16ToFloat(h);
}

// The integer quant of weight j of a row (Q4_0's with its offset of 8 taken off).
int Quant(WeightType type, const uint8_t* row, int64_t j) {
  const int64_t b = j / 32;
  const int e = static_cast<int>(j % 32);
  if (type == WeightType::kQ8_0) return static_cast<int8_t>(row[34 * b + 2 + e]);
  const uint8_t* qs = type == WeightType::kQ4_0 ? row + 18 * b + 2 : row + 20 * b + 4;
  const int nibble = e < 16 ? qs[e] & 0x0f : qs[e - 16] >> 4;
  return type == WeightType::kQ4_0 ? nibble - 8 : nibble;
}

// Weight j of a row, as GGUF defines it, in double.
double Dequantize(WeightType type, const uint8_t* row, int64_t j) {
  int64_t b = j / 32;
  int e = static_cast<int>(j % 32);
  switch (type) {
    case WeightType::kQ8_0: {
      const uint8_t* block = row + 34 * b;
      return static_cast<double>(GetHalf(block)) * static_cast<int8_t>(block[2 + e]);
    }
    case WeightType::kQ4_0: {
      const uint8_t* block = row + 18 * b;
      int nibble = e < 16 ? block[2 + e] & 0x0f : block[2 + e - 16] >> 4;
      return static_cast<double>(GetHalf(block)) * (nibble - 8);
    }
    case WeightType::kQ4_1: {
      const uint8_t* block = row + 20 * b;
      int nibble = e < 16 ? block[4 + e] & 0x0f : block[4 + e - 16] >> 4;
      return static_cast<double>(GetHalf(block)) * nibble + GetHalf(block + 2);
    }
    case WeightType::kF32:
    case WeightType::kBF16:
    case WeightType::kF16:
      return Widen(type, row, j);
  }
  return 0;
}

std::vector<float> RandomActivations(int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(n);
  for (float& v : x) v = normal(rng);
  // Outliers, as real activations have, so some blocks have a coarse scale.
  for (int64_t i = 0; i < n; i += 97) x[i] *= 20.0f;
  return x;
}

// `rows` GGUF rows in the layout the kernels read.
std::vector<uint8_t> Pack(WeightType type, int64_t rows, int64_t cols,
                          const std::vector<uint8_t>& gguf) {
  std::vector<uint8_t> packed(PackedBytes(type, rows, cols));
  PackWeights(type, rows, cols, gguf.data(), packed.data());
  return packed;
}

// y = x w^T on one thread for `rows` GGUF weight rows and one activation row.
std::vector<float> MatVec(Isa isa, WeightType type, int64_t rows, int64_t k,
                          const std::vector<uint8_t>& gguf, const std::vector<float>& x) {
  std::vector<uint8_t> packed = Pack(type, rows, k, gguf);
  ThreadPool one(1);
  MatMulScratch scratch;
  std::vector<float> y(rows);
  MatMul(one, isa, WeightMatrix{type, rows, k, packed.data()}, x.data(), 1, k, y.data(), rows,
         &scratch);
  return y;
}

// The quantized formats' definition (kernels.h, MatMul), written out from the GGUF bytes: the
// exact integer sum per block, then two (Q4_1) or one fused multiply-add in block order.
float DefinedDot(WeightType type, const uint8_t* row, const BlockQ8* x, int64_t k) {
  const size_t block_bytes = RowBytes(type, 32);
  float acc = 0.0f;
  for (int64_t b = 0; b < k / 32; ++b) {
    const uint8_t* block = row + b * block_bytes;
    int32_t sum = 0;
    for (int e = 0; e < 32; ++e) sum += Quant(type, row, 32 * b + e) * x[b].q[e];
    acc = std::fma(GetHalf(block) * x[b].d, static_cast<float>(sum), acc);
    if (type == WeightType::kQ4_1) acc = std::fma(GetHalf(block + 2), x[b].sum, acc);
  }
  return acc;
}

// The float types' definition (kernels.h, MatMul): two running sums, even and odd k.
float DefinedFloatDot(WeightType type, const uint8_t* row, const float* x, int64_t k) {
  float even = 0.0f, odd = 0.0f;
  for (int64_t i = 0; i < k; i += 2) {
    even = std::fma(Widen(type, row, i), x[i], even);
    odd = std::fma(Widen(type, row, i + 1), x[i + 1], odd);
  }
  return even + odd;
}

// Float summation over `steps` sequential additions per partial sum, plus the lanes combined at
// the end: the error is below (steps + 16) units of 2^-24 of the sum of the terms' magnitudes.
double Tolerance(int64_t steps, double magnitude) {
  return (steps + 16) * std::ldexp(1.0, -23) * magnitude + 1e-30;
}

std::vector<int64_t> Shapes() { return {32, 64, 96, 160, 576, 1536}; }

// The rounding rule written out independently: half away from zero, in double.
int RoundHalfAway(float v) {
  double a = std::floor(std::fabs(static_cast<double>(v)) + 0.5);
  return static_cast<int>(v < 0 ? -a : a);
}

TEST(QuantizeRowQ8Test, MatchesTheScalarDefinition) {
  std::mt19937 rng(1);
  // The vector paths take 8 blocks at a time: 1,536 is 48 blocks, 576 is 18 (a partial group).
  for (int64_t k : {1536, 576}) {
    std::vector<float> x = RandomActivations(k, rng);
    // Block 0: exact ties (amax 127 gives d = 1), which must round away from zero.
    const float ties[] = {127.0f, 0.5f, -0.5f, 1.5f, -1.5f, 2.5f, -2.5f, 126.5f, -126.5f, 0.0f};
    for (int j = 0; j < 32; ++j) x[j] = ties[j % 10];
    // Block 1 and the last block: all zeros.
    for (int j = 32; j < 64; ++j) x[j] = 0.0f;
    for (int64_t j = k - 32; j < k; ++j) x[j] = 0.0f;
    for (Isa isa : Paths()) {
      SCOPED_TRACE(std::string(IsaName(isa)) + " k=" + std::to_string(k));
      std::vector<BlockQ8> q(x.size() / 32);
      QuantizeRowQ8(isa, x.data(), static_cast<int64_t>(x.size()), q.data());
      for (size_t b = 0; b < q.size(); ++b) {
        const float* p = x.data() + 32 * b;
        float amax = 0.0f;
        for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(p[j]));
        float d = amax / 127.0f;
        float inv = d != 0.0f ? 1.0f / d : 0.0f;
        ASSERT_EQ(q[b].d, d) << "block " << b;
        int sum = 0;
        for (int j = 0; j < 32; ++j) {
          int expected = RoundHalfAway(p[j] * inv);
          ASSERT_EQ(q[b].q[j], expected) << "block " << b << " element " << j << " x=" << p[j];
          EXPECT_LE(std::fabs(p[j] - d * q[b].q[j]), 0.5001 * d) << "block " << b;
          sum += expected;
        }
        ASSERT_EQ(q[b].sum, d * static_cast<float>(sum)) << "block " << b;
      }
      EXPECT_EQ(q[0].q[1], 1);
      EXPECT_EQ(q[0].q[2], -1);
      EXPECT_EQ(q[0].q[5], 3);
      EXPECT_EQ(q[0].q[6], -3);
      EXPECT_EQ(q[0].q[7], 127);
      EXPECT_EQ(q[1].d, 0.0f);
      EXPECT_EQ(q.back().d, 0.0f);
    }
  }
}

TEST(MatMulTest, QuantizedRowMatchesDoublePrecisionReference) {
  std::mt19937 rng(2);
  for (WeightType type : kQuantizedTypes) {
    for (int64_t k : Shapes()) {
      std::vector<uint8_t> w = RandomWeights(type, 8, k, rng);
      for (int trial = 0; trial < 8; ++trial) {
        std::vector<float> x = RandomActivations(k, rng);
        std::vector<BlockQ8> xq(k / 32);
        QuantizeRowQ8(Isa::kPortable, x.data(), k, xq.data());
        const uint8_t* row = w.data() + trial * RowBytes(type, k);
        double reference = 0, magnitude = 0;
        for (int64_t j = 0; j < k; ++j) {
          double xj = static_cast<double>(xq[j / 32].d) * xq[j / 32].q[j % 32];
          double wj = Dequantize(type, row, j);
          reference += wj * xj;
          magnitude += std::fabs(wj * xj);
          // Q4_1's offset is summed apart, so its terms count on their own.
          if (type == WeightType::kQ4_1)
            magnitude += std::fabs(GetHalf(row + 20 * (j / 32) + 2) * xj);
        }
        for (Isa isa : Paths()) {
          float y = MatVec(isa, type, 8, k, w, x)[trial];
          EXPECT_NEAR(y, reference, Tolerance(2 * k / 32, magnitude))
              << IsaName(isa) << " " << WeightTypeName(type) << " k=" << k;
        }
      }
    }
  }
}

TEST(ExpSubMaxSumTest, MatchesExpWithinTwoUlpsAndEachElementIgnoresN) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> spread(-100.0f, 20.0f);
  for (Isa isa : Paths()) {
    for (int64_t n : {1, 3, 7, 8, 9, 16, 17, 64, 1000, 2049}) {
      std::vector<float> x(static_cast<size_t>(n));
      for (float& v : x) v = spread(rng);
      const float max = *std::max_element(x.begin(), x.end());
      std::vector<float> e = x;
      const float sum = ExpSubMaxSum(isa, e.data(), n, max);
      double want_sum = 0;
      for (int64_t i = 0; i < n; ++i) {
        const double want = std::exp(static_cast<double>(x[i] - max));  // the f32 difference
        want_sum += want;
        // Below exp(-87) the input is clamped: those values are ~1.6e-38 instead of smaller.
        const double tolerance = want < 1e-37 ? 2e-38 : want * 2.5e-7;
        ASSERT_NEAR(e[i], want, tolerance) << IsaName(isa) << " n=" << n << " i=" << i;
      }
      EXPECT_NEAR(sum, want_sum, want_sum * 1e-6) << IsaName(isa) << " n=" << n;
      // An element's value is the same whatever n is (a prefix gives the same numbers).
      std::vector<float> prefix(x.begin(), x.begin() + (n + 1) / 2);
      ExpSubMaxSum(isa, prefix.data(), static_cast<int64_t>(prefix.size()), max);
      for (size_t i = 0; i < prefix.size(); ++i) ASSERT_EQ(prefix[i], e[i]) << n << " " << i;
    }
    std::vector<float> zero = {0.0f};
    EXPECT_EQ(ExpSubMaxSum(isa, zero.data(), 1, 0.0f), 1.0f) << IsaName(isa);
  }
}

TEST(AttentionTest, ScoresAndValuesMatchDoublePrecisionAndIgnoreTheirNeighbours) {
  std::mt19937 rng(8);
  for (Isa isa : Paths()) {
    for (int64_t hd : {64, 72, 256}) {
      for (int64_t count : {1, 5, 8, 13, 100}) {
        std::vector<std::vector<float>> keys, values;
        std::vector<const float*> k_rows, v_rows;
        for (int64_t p = 0; p < count; ++p) {
          keys.push_back(RandomActivations(hd, rng));
          values.push_back(RandomActivations(hd, rng));
        }
        for (int64_t p = 0; p < count; ++p) {
          k_rows.push_back(keys[p].data());
          v_rows.push_back(values[p].data());
        }
        const std::vector<float> q = RandomActivations(hd, rng);
        std::vector<float> scores(count), out(hd);
        AttentionScores(isa, k_rows.data(), q.data(), 1, count, hd, 0.125f, scores.data(), count);
        AttentionValues(isa, v_rows.data(), scores.data(), count, 1, count, hd, out.data());
        for (int64_t p = 0; p < count; ++p) {
          double want = 0, magnitude = 0;
          for (int64_t i = 0; i < hd; ++i) {
            want += static_cast<double>(keys[p][i]) * q[i];
            magnitude += std::fabs(static_cast<double>(keys[p][i]) * q[i]);
          }
          ASSERT_NEAR(scores[p], want * 0.125, 1e-6 * magnitude) << IsaName(isa);
          // A score is the same computed alone.
          float alone = 0;
          AttentionScores(isa, &k_rows[p], q.data(), 1, 1, hd, 0.125f, &alone, 1);
          ASSERT_EQ(alone, scores[p]) << IsaName(isa) << " hd=" << hd << " p=" << p;
        }
        for (int64_t i = 0; i < hd; ++i) {
          double want = 0, magnitude = 0;
          for (int64_t p = 0; p < count; ++p) {
            want += static_cast<double>(scores[p]) * values[p][i];
            magnitude += std::fabs(static_cast<double>(scores[p]) * values[p][i]);
          }
          ASSERT_NEAR(out[i], want, 1e-6 * magnitude + 1e-30) << IsaName(isa);
        }
      }
    }
  }
}

TEST(AttentionTest, AQueryGroupGivesEachQueryItsOwnBits) {
  std::mt19937 rng(14);
  for (Isa isa : Paths()) {
    for (int64_t hd : {64, 72}) {
      for (int64_t count : {1, 3, 4, 9, 37}) {
        std::vector<std::vector<float>> keys, values;
        std::vector<const float*> k_rows, v_rows;
        for (int64_t p = 0; p < count; ++p) {
          keys.push_back(RandomActivations(hd, rng));
          values.push_back(RandomActivations(hd, rng));
          k_rows.push_back(keys.back().data());
          v_rows.push_back(values.back().data());
        }
        for (int64_t queries : {1, 2, 3, 4, 5, 7, 8}) {
          const std::vector<float> q = RandomActivations(queries * hd, rng);
          const int64_t stride = count + 3;
          std::vector<float> scores(queries * stride, -1.0f), out(queries * hd);
          AttentionScores(isa, k_rows.data(), q.data(), queries, count, hd, 0.25f, scores.data(),
                          stride);
          AttentionValues(isa, v_rows.data(), scores.data(), stride, queries, count, hd,
                          out.data());
          for (int64_t n = 0; n < queries; ++n) {
            std::vector<float> one(count), one_out(hd);
            AttentionScores(isa, k_rows.data(), &q[n * hd], 1, count, hd, 0.25f, one.data(), count);
            ASSERT_EQ(std::memcmp(one.data(), &scores[n * stride], count * 4), 0)
                << IsaName(isa) << " query " << n << " of " << queries << " count " << count;
            ASSERT_EQ(scores[n * stride + count], -1.0f) << "wrote past the scores";
            AttentionValues(isa, v_rows.data(), one.data(), count, 1, count, hd, one_out.data());
            ASSERT_EQ(std::memcmp(one_out.data(), &out[n * hd], hd * 4), 0)
                << IsaName(isa) << " query " << n << " of " << queries << " count " << count;
          }
        }
      }
    }
  }
}

TEST(AttentionTest, Bf16RowsGiveTheBitsOfTheirWidenedRows) {
  std::mt19937 rng(17);
  for (Isa isa : Paths()) {
    for (int64_t count : {1, 5, 12, 40}) {
      const int64_t hd = 64;
      std::vector<std::vector<uint16_t>> keys(count), values(count);
      std::vector<std::vector<float>> keys_f32(count), values_f32(count);
      std::vector<const uint16_t*> k_bf16, v_bf16;
      std::vector<const float*> k_f32, v_f32;
      for (int64_t p = 0; p < count; ++p) {
        for (float v : RandomActivations(hd, rng)) keys[p].push_back(FloatToBf16(v));
        for (float v : RandomActivations(hd, rng)) values[p].push_back(FloatToBf16(v));
        for (uint16_t b : keys[p]) keys_f32[p].push_back(Bf16ToFloat(b));
        for (uint16_t b : values[p]) values_f32[p].push_back(Bf16ToFloat(b));
        k_bf16.push_back(keys[p].data());
        v_bf16.push_back(values[p].data());
        k_f32.push_back(keys_f32[p].data());
        v_f32.push_back(values_f32[p].data());
      }
      for (int64_t queries : {1, 2, 3}) {
        const std::vector<float> q = RandomActivations(queries * hd, rng);
        std::vector<float> a(queries * count), b(queries * count), out_a(queries * hd),
            out_b(queries * hd);
        AttentionScores(isa, k_f32.data(), q.data(), queries, count, hd, 0.125f, a.data(), count);
        AttentionScoresBf16(isa, k_bf16.data(), q.data(), queries, count, hd, 0.125f, b.data(),
                            count);
        ASSERT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0) << IsaName(isa);
        AttentionValues(isa, v_f32.data(), a.data(), count, queries, count, hd, out_a.data());
        AttentionValuesBf16(isa, v_bf16.data(), a.data(), count, queries, count, hd, out_b.data());
        ASSERT_EQ(std::memcmp(out_a.data(), out_b.data(), out_a.size() * 4), 0) << IsaName(isa);
      }
    }
  }
}

TEST(SiluMulTest, MatchesTheDefinitionAndEachElementIgnoresN) {
  std::mt19937 rng(16);
  std::vector<float> gate = RandomActivations(203, rng), up = RandomActivations(203, rng);
  // Far tails: exp overflows or vanishes there.
  gate[0] = -100.0f;
  gate[1] = 100.0f;
  gate[2] = -88.5f;
  gate[3] = 0.0f;
  for (Isa isa : Paths()) {
    std::vector<float> out = gate;
    SiluMul(isa, out.data(), up.data(), static_cast<int64_t>(out.size()));
    for (size_t i = 0; i < out.size(); ++i) {
      const double g = gate[i];
      const double want = g / (1.0 + std::exp(-g)) * up[i];
      ASSERT_NEAR(out[i], want, 4e-7 * std::fabs(want) + 1e-30)
          << IsaName(isa) << " g=" << g << " up=" << up[i];
      // Alone, or as any element of a shorter call, it is the same bits.
      float alone = gate[i];
      SiluMul(isa, &alone, &up[i], 1);
      ASSERT_EQ(alone, out[i]) << IsaName(isa) << " element " << i;
    }
  }
}

TEST(GeluTanhMulTest, MatchesTransformersTanhGeluAndEachElementIgnoresN) {
  std::mt19937 rng(17);
  std::vector<float> gate = RandomActivations(203, rng), up = RandomActivations(203, rng);
  gate[0] = -100.0f;  // exp overflows or vanishes out there
  gate[1] = 100.0f;
  gate[2] = -6.0f;
  gate[3] = 0.0f;
  for (Isa isa : Paths()) {
    std::vector<float> out = gate;
    GeluTanhMul(isa, out.data(), up.data(), static_cast<int64_t>(out.size()));
    for (size_t i = 0; i < out.size(); ++i) {
      const double g = gate[i];
      const double u = std::sqrt(2.0 / std::numbers::pi) * (g + 0.044715 * g * g * g);
      const double want = 0.5 * g * (1.0 + std::tanh(u)) * up[i];
      // The float argument of exp carries a few ulps of |2u|, which its value multiplies.
      ASSERT_NEAR(out[i], want, 4e-7 * (1.0 + std::fabs(2.0 * u)) * std::fabs(want) + 1e-30)
          << IsaName(isa) << " g=" << g << " up=" << up[i];
      float alone = gate[i];
      GeluTanhMul(isa, &alone, &up[i], 1);
      ASSERT_EQ(alone, out[i]) << IsaName(isa) << " element " << i;
    }
  }
}

TEST(AxpyF32Test, AddsAScaledRow) {
  std::mt19937 rng(6);
  for (Isa isa : Paths()) {
    for (int64_t n : {1, 7, 8, 9, 64, 100}) {
      std::vector<float> x = RandomActivations(n, rng), y = RandomActivations(n, rng);
      std::vector<float> out = y;
      AxpyF32(isa, 0.37f, x.data(), out.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_NEAR(out[i], y[i] + 0.37 * x[i], 1e-6 * (std::fabs(y[i]) + std::fabs(x[i])))
            << IsaName(isa);
      }
    }
  }
}

TEST(KernelsTest, PathsAgree) {
  std::mt19937 rng(4);
  for (int64_t k : Shapes()) {
    std::vector<float> x = RandomActivations(k, rng);
    std::vector<BlockQ8> portable(k / 32);
    QuantizeRowQ8(Isa::kPortable, x.data(), k, portable.data());
    for (Isa isa : Paths()) {
      // Quantization is exact arithmetic on every path, so it agrees bit for bit.
      std::vector<BlockQ8> q(k / 32);
      QuantizeRowQ8(isa, x.data(), k, q.data());
      ASSERT_EQ(std::memcmp(portable.data(), q.data(), q.size() * sizeof(BlockQ8)), 0)
          << IsaName(isa) << " k=" << k;
    }
    // Every weight type has one definition every path follows: bit for bit too.
    for (WeightType type : kAllTypes) {
      const int64_t n = 13;
      std::vector<uint8_t> w = RandomWeights(type, n, k, rng);
      std::vector<float> expected = MatVec(Isa::kPortable, type, n, k, w, x);
      for (Isa isa : Paths()) {
        ASSERT_EQ(std::memcmp(expected.data(), MatVec(isa, type, n, k, w, x).data(), n * 4), 0)
            << IsaName(isa) << " " << WeightTypeName(type) << " k=" << k;
      }
    }
  }
}

TEST(PackWeightsTest, UnpackRowGivesBackEveryRow) {
  std::mt19937 rng(13);
  for (WeightType type : kAllTypes) {
    for (int64_t rows : {1, 7, 8, 9, 21}) {
      const int64_t k = 96;
      std::vector<uint8_t> w = RandomWeights(type, rows, k, rng);
      std::vector<uint8_t> packed = Pack(type, rows, k, w);
      ASSERT_EQ(packed.size(), static_cast<size_t>((rows + 7) / 8 * 8) * RowBytes(type, k));
      for (int64_t n = 0; n < rows; ++n) {
        std::vector<uint8_t> row(RowBytes(type, k));
        UnpackRow(WeightMatrix{type, rows, k, packed.data()}, n, row.data());
        ASSERT_EQ(std::memcmp(row.data(), w.data() + n * row.size(), row.size()), 0)
            << WeightTypeName(type) << " row " << n << " of " << rows;
      }
    }
  }
}

// One MatMul problem: the weights, a pool of distinct activation rows and each row's result
// computed alone on one thread.
struct Problem {
  WeightType type;
  int64_t k, n;
  std::vector<uint8_t> w;  // GGUF rows
  std::vector<uint8_t> packed;
  std::vector<std::vector<float>> rows;
  std::vector<std::vector<float>> alone;

  WeightMatrix Matrix() const { return WeightMatrix{type, n, k, packed.data()}; }
};

Problem MakeProblem(Isa isa, WeightType type, int64_t k, int64_t n, int num_rows,
                    std::mt19937& rng) {
  Problem p{type, k, n, RandomWeights(type, n, k, rng), {}, {}, {}};
  p.packed = Pack(type, n, k, p.w);
  ThreadPool one(1);
  MatMulScratch scratch;
  for (int r = 0; r < num_rows; ++r) {
    p.rows.push_back(RandomActivations(k, rng));
    std::vector<float> y(n);
    MatMul(one, isa, p.Matrix(), p.rows.back().data(), 1, k, y.data(), n, &scratch);
    p.alone.push_back(std::move(y));
  }
  return p;
}

// Runs `batch` rows (p.rows[(start + i) % size]) in one MatMul with padded strides and checks
// that each output row is bitwise the row computed alone.
void ExpectBatchMatchesAlone(const Problem& p, Isa isa, ThreadPool& pool, int batch, int start,
                             MatMulScratch* scratch) {
  const int64_t x_stride = p.k + 5, y_stride = p.n + 3;
  std::vector<float> x(batch * x_stride, std::nanf("")), y(batch * y_stride, -1.0f);
  int size = static_cast<int>(p.rows.size());
  for (int i = 0; i < batch; ++i) {
    std::copy(p.rows[(start + i) % size].begin(), p.rows[(start + i) % size].end(),
              x.begin() + i * x_stride);
  }
  MatMul(pool, isa, p.Matrix(), x.data(), batch, x_stride, y.data(), y_stride, scratch);
  for (int i = 0; i < batch; ++i) {
    const std::vector<float>& expected = p.alone[(start + i) % size];
    ASSERT_EQ(std::memcmp(expected.data(), y.data() + i * y_stride, p.n * sizeof(float)), 0)
        << IsaName(isa) << " " << WeightTypeName(p.type) << " k=" << p.k << " n=" << p.n << ": row "
        << (start + i) % size << " at position " << i << " of " << batch << " on "
        << pool.num_threads() << " threads differs from the row alone";
    for (int64_t c = p.n; c < y_stride; ++c) {
      ASSERT_EQ(y[i * y_stride + c], -1.0f) << "wrote past the row";
    }
  }
}

TEST(MatMulTest, RowsAloneFollowTheDefinition) {
  std::mt19937 rng(5);
  for (Isa isa : Paths()) {
    for (WeightType type : kAllTypes) {
      const int64_t k = 576, n = 37;
      Problem p = MakeProblem(isa, type, k, n, 2, rng);
      for (size_t r = 0; r < p.rows.size(); ++r) {
        std::vector<BlockQ8> xq(k / 32);
        QuantizeRowQ8(isa, p.rows[r].data(), k, xq.data());
        for (int64_t j = 0; j < n; ++j) {
          const uint8_t* row = p.w.data() + j * RowBytes(type, k);
          float expected = IsFloatType(type) ? DefinedFloatDot(type, row, p.rows[r].data(), k)
                                             : DefinedDot(type, row, xq.data(), k);
          ASSERT_EQ(p.alone[r][j], expected) << IsaName(isa) << " " << WeightTypeName(type);
        }
      }
    }
  }
}

// Every batch size 1..max_batch, each row at several positions, on 1..4 threads.
void ExpectBatchInvariant(int64_t k, int64_t n, uint32_t seed, int max_batch = 17) {
  std::mt19937 rng(seed);
  for (Isa isa : Paths()) {
    for (WeightType type : kAllTypes) {
      Problem p = MakeProblem(isa, type, k, n, 17, rng);
      MatMulScratch scratch;
      for (int threads = 1; threads <= 4; ++threads) {
        ThreadPool pool(threads);
        for (int batch = 1; batch <= max_batch; ++batch) {
          ExpectBatchMatchesAlone(p, isa, pool, batch, batch * threads, &scratch);
          if (testing::Test::HasFatalFailure()) return;
        }
      }
    }
  }
}

// Odd small shapes: fewer output columns than threads, one block, a prime count of columns.
TEST(MatMulTest, BatchInvariantAtSmallShapes) {
  ExpectBatchInvariant(32, 1, 6);
  ExpectBatchInvariant(64, 7, 6);
  ExpectBatchInvariant(96, 5, 6);
  ExpectBatchInvariant(160, 37, 6);
}

// The AVX2 kernel's tiles (6 rows x a group of 8 columns) at every remainder: batches up to 64
// rows, column counts that leave 1..7 columns in the last group, an odd and an even number of
// blocks. At k = 224 a panel of rows holds 48 (PanelRows in kernels.h), so the larger batches
// span two panels; at k = 1536 (below) a panel holds 6.
TEST(MatMulTest, BatchInvariantAcrossTiles) {
  ExpectBatchInvariant(96, 37, 10, 64);
  ExpectBatchInvariant(64, 29, 11, 64);
  ExpectBatchInvariant(224, 70, 12, 64);
}

TEST(MatMulTest, BatchInvariantAtDecodeShape) { ExpectBatchInvariant(576, 960, 9); }

TEST(MatMulTest, BatchInvariantAtModelShapes) {
  std::mt19937 rng(7);
  for (Isa isa : Paths()) {
    for (WeightType type : kAllTypes) {
      Problem p = MakeProblem(isa, type, 1536, 3072, 5, rng);
      MatMulScratch scratch;
      for (int threads : {1, 3}) {
        ThreadPool pool(threads);
        for (int batch : {2, 5, 16}) {
          ExpectBatchMatchesAlone(p, isa, pool, batch, batch + threads, &scratch);
          if (HasFatalFailure()) return;
        }
      }
    }
  }
}

TEST(MatMulTest, ManyMatricesGiveEachItsOwnBits) {
  std::mt19937 rng(15);
  const int64_t k = 192, rows = 6;
  for (Isa isa : Paths()) {
    for (WeightType type : kAllTypes) {
      // Unlike column counts (one not a multiple of 8), and a matrix of another type, which
      // goes on its own.
      std::vector<int64_t> ns = {40, 13, 64};
      std::vector<std::vector<uint8_t>> packed;
      std::vector<WeightMatrix> ws;
      for (int64_t n : ns) {
        packed.push_back(Pack(type, n, k, RandomWeights(type, n, k, rng)));
        ws.push_back(WeightMatrix{type, n, k, packed.back().data()});
      }
      const WeightType other = type == WeightType::kQ4_1 ? WeightType::kQ8_0 : WeightType::kQ4_1;
      packed.push_back(Pack(other, 24, k, RandomWeights(other, 24, k, rng)));
      ws.push_back(WeightMatrix{other, 24, k, packed.back().data()});
      std::vector<float> x = RandomActivations(rows * k, rng);
      for (int threads : {1, 3}) {
        ThreadPool pool(threads);
        MatMulScratch scratch;
        std::vector<std::vector<float>> ys, alone;
        std::vector<MatMulOutput> outs;
        for (const WeightMatrix& w : ws) {
          ys.emplace_back(rows * w.rows, -1.0f);
          alone.emplace_back(rows * w.rows, -2.0f);
          MatMul(pool, isa, w, x.data(), rows, k, alone.back().data(), w.rows, &scratch);
        }
        for (size_t i = 0; i < ws.size(); ++i) outs.push_back({&ws[i], ys[i].data(), ws[i].rows});
        MatMulMany(pool, isa, outs, x.data(), rows, k, &scratch);
        for (size_t i = 0; i < ws.size(); ++i) {
          ASSERT_EQ(std::memcmp(ys[i].data(), alone[i].data(), ys[i].size() * 4), 0)
              << IsaName(isa) << " " << WeightTypeName(type) << " matrix " << i << " on " << threads
              << " threads";
        }
        // Without the odd one out: all in one pass.
        outs.pop_back();
        std::fill(ys[0].begin(), ys[0].end(), -1.0f);
        MatMulMany(pool, isa, outs, x.data(), rows, k, &scratch);
        ASSERT_EQ(std::memcmp(ys[0].data(), alone[0].data(), ys[0].size() * 4), 0);
      }
    }
  }
}

TEST(MatMulTest, MatchesDoublePrecisionReference) {
  std::mt19937 rng(8);
  const int64_t k = 576, n = 24;
  for (Isa isa : Paths()) {
    for (WeightType type : kAllTypes) {
      Problem p = MakeProblem(isa, type, k, n, 3, rng);
      for (size_t r = 0; r < p.rows.size(); ++r) {
        std::vector<BlockQ8> xq(k / 32);
        QuantizeRowQ8(Isa::kPortable, p.rows[r].data(), k, xq.data());
        for (int64_t j = 0; j < n; ++j) {
          const uint8_t* row = p.w.data() + j * RowBytes(type, k);
          double reference = 0, magnitude = 0;
          for (int64_t c = 0; c < k; ++c) {
            double xc = IsFloatType(type)
                            ? p.rows[r][c]
                            : static_cast<double>(xq[c / 32].d) * xq[c / 32].q[c % 32];
            double term = Dequantize(type, row, c) * xc;
            reference += term;
            magnitude += std::fabs(term);
            if (type == WeightType::kQ4_1)
              magnitude += std::fabs(GetHalf(row + 20 * (c / 32) + 2) * xc);
          }
          EXPECT_NEAR(p.alone[r][j], reference,
                      Tolerance(IsFloatType(type) ? k / 2 : k / 8, magnitude))
              << IsaName(isa) << " " << WeightTypeName(type) << " output " << j;
        }
      }
    }
  }
}

}  // namespace
}  // namespace kiln::native::cpu
