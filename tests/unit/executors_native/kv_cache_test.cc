#include "kiln/executors/native/kv_cache.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace kiln::native {
namespace {

// Every finite E4M3FN value, from its definition: sign, 4 exponent bits (bias 7), 3 mantissa
// bits; exponent 0 is subnormal (m x 2^-9); 0x7F and 0xFF are NaN.
float Fp8Definition(int code) {
  const int e = (code >> 3) & 15, m = code & 7;
  const double magnitude =
      e == 0 ? m * std::ldexp(1.0, -9) : (1 + m / 8.0) * std::ldexp(1.0, e - 7);
  return static_cast<float>((code & 0x80) ? -magnitude : magnitude);
}

TEST(Fp8E4M3, EveryCodeDecodesToItsDefinitionAndEncodesBack) {
  for (int code = 0; code < 256; ++code) {
    if ((code & 0x7F) == 0x7F) {
      EXPECT_TRUE(std::isnan(Fp8E4M3ToFloat(static_cast<uint8_t>(code))));
      continue;
    }
    const float v = Fp8Definition(code);
    EXPECT_EQ(Fp8E4M3ToFloat(static_cast<uint8_t>(code)), v) << code;
    if (code == 0x80) continue;  // -0 encodes as -0 (0x80), checked below
    EXPECT_EQ(FloatToFp8E4M3(v), code) << code << " " << v;
  }
  EXPECT_EQ(FloatToFp8E4M3(-0.0f), 0x80);
  EXPECT_EQ(Fp8E4M3ToFloat(0x7E), 448.0f);
}

TEST(Fp8E4M3, RoundsToNearestTiesToEvenAndSaturates) {
  // Between each pair of neighbouring positive codes: just below the midpoint goes down, just
  // above goes up, and the midpoint itself goes to the even code.
  for (int code = 0; code < 0x7E; ++code) {
    const float lo = Fp8Definition(code), hi = Fp8Definition(code + 1);
    const float mid = (lo + hi) / 2;  // exact: both are short binary fractions
    EXPECT_EQ(FloatToFp8E4M3(std::nextafter(mid, lo)), code) << code;
    EXPECT_EQ(FloatToFp8E4M3(std::nextafter(mid, hi)), code + 1) << code;
    EXPECT_EQ(FloatToFp8E4M3(mid), code % 2 == 0 ? code : code + 1) << code;
    EXPECT_EQ(FloatToFp8E4M3(-mid), 0x80 | (code % 2 == 0 ? code : code + 1)) << code;
  }
  EXPECT_EQ(FloatToFp8E4M3(1e6f), 0x7E);
  EXPECT_EQ(FloatToFp8E4M3(-1e6f), 0xFE);
  EXPECT_EQ(FloatToFp8E4M3(INFINITY), 0x7E);
  EXPECT_EQ(FloatToFp8E4M3(NAN) & 0x7F, 0x7F);
  EXPECT_EQ(FloatToFp8E4M3(1e-30f), 0x00);
}

TEST(Bf16, RoundsToNearestTiesToEven) {
  EXPECT_EQ(FloatToBf16(1.0f), 0x3F80);
  EXPECT_EQ(Bf16ToFloat(0x3F80), 1.0f);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to the even 1.0; a hair above goes up.
  EXPECT_EQ(FloatToBf16(1.0f + std::ldexp(1.0f, -8)), 0x3F80);
  EXPECT_EQ(FloatToBf16(std::nextafter(1.0f + std::ldexp(1.0f, -8), 2.0f)), 0x3F81);
  // 1 + 3 x 2^-8 is halfway between 0x3F81 and 0x3F82: to the even 0x3F82.
  EXPECT_EQ(FloatToBf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3F82);
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(NAN))));
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 10.0f);
  for (int i = 0; i < 10000; ++i) {
    const float x = normal(rng);
    EXPECT_LE(std::fabs(Bf16ToFloat(FloatToBf16(x)) - x), std::fabs(x) * std::ldexp(1.0f, -8));
  }
}

// The definite names; auto depends on the model and is the planner's (planner_test).
TEST(ParseKvDtype, TakesVllmsNames) {
  EXPECT_EQ(ParseKvDtype("float32").value(), KvDtype::kF32);
  EXPECT_EQ(ParseKvDtype("f32").value(), KvDtype::kF32);
  EXPECT_EQ(ParseKvDtype("bfloat16").value(), KvDtype::kBF16);
  EXPECT_EQ(ParseKvDtype("bf16").value(), KvDtype::kBF16);
  EXPECT_FALSE(ParseKvDtype("auto").ok());
  EXPECT_EQ(ParseKvDtype("fp8").value(), KvDtype::kFp8E4M3);
  EXPECT_EQ(ParseKvDtype("fp8_e4m3").value(), KvDtype::kFp8E4M3);
  auto bad = ParseKvDtype("fp8_e5m2");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("fp8_e4m3"), std::string::npos);
}

class KvCacheTest : public ::testing::TestWithParam<KvDtype> {};

TEST_P(KvCacheTest, ReadsBackWhatWasWrittenWithinTheTypesPrecision) {
  const KvDtype dtype = GetParam();
  constexpr int64_t kLayers = 3, kSlots = 40, kHeads = 2, kDim = 64;
  KvCache cache;
  cache.Allocate(dtype, kLayers, kSlots, kHeads, kDim);
  EXPECT_EQ(cache.bytes(), KvCache::BytesPerToken(dtype, kLayers, kHeads, kDim) * kSlots);
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  // Per layer and slot, keys and values with one head much larger than the other, as real
  // keys have: per-head scales keep the small head's precision.
  std::vector<std::vector<float>> keys(kLayers * kSlots), values(kLayers * kSlots);
  for (int64_t l = 0; l < kLayers; ++l) {
    for (int64_t s = 0; s < kSlots; ++s) {
      auto& k = keys[l * kSlots + s];
      auto& v = values[l * kSlots + s];
      for (int64_t i = 0; i < kHeads * kDim; ++i) {
        const float magnitude = i < kDim ? 50.0f : 0.02f;
        k.push_back(normal(rng) * magnitude);
        v.push_back(normal(rng) * magnitude);
      }
      cache.Write(l, s, k.data(), v.data());
    }
  }
  std::vector<float> buf(kDim);
  for (int64_t l = 0; l < kLayers; ++l) {
    for (int64_t s = 0; s < kSlots; ++s) {
      for (int64_t h = 0; h < kHeads; ++h) {
        for (bool is_key : {true, false}) {
          const float* want = (is_key ? keys : values)[l * kSlots + s].data() + h * kDim;
          const float* got =
              is_key ? cache.Key(l, s, h, buf.data()) : cache.Value(l, s, h, buf.data());
          float amax = 0.0f;
          for (int64_t i = 0; i < kDim; ++i) amax = std::max(amax, std::fabs(want[i]));
          for (int64_t i = 0; i < kDim; ++i) {
            const float err = std::fabs(got[i] - want[i]);
            switch (dtype) {
              case KvDtype::kF32:
                ASSERT_EQ(got[i], want[i]);
                break;
              case KvDtype::kBF16:
                ASSERT_LE(err, std::fabs(want[i]) * std::ldexp(1.0f, -8));
                break;
              case KvDtype::kFp8E4M3:
                // Half a step of 3 mantissa bits of the value, or of the smallest normal step
                // at the head's scale (amax / 448 x 2^-6 x 2^-3).
                ASSERT_LE(
                    err,
                    std::max(std::fabs(want[i]) / 16, amax / 448 * std::ldexp(1.0f, -10)) * 1.0001f)
                    << l << " " << s << " " << h << " " << i;
                break;
            }
          }
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllDtypes, KvCacheTest,
                         ::testing::Values(KvDtype::kF32, KvDtype::kBF16, KvDtype::kFp8E4M3),
                         [](const auto& info) { return std::string(KvDtypeName(info.param)); });

}  // namespace
}  // namespace kiln::native
