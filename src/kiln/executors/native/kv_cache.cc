#include "kiln/executors/native/kv_cache.h"

#include <array>
#include <cmath>
#include <cstring>

namespace kiln::native {
namespace {

constexpr float kFp8Max = 448.0f;

std::array<float, 256> MakeFp8Table() {
  std::array<float, 256> table{};
  for (int code = 0; code < 256; ++code) {
    const int exponent = (code >> 3) & 15, mantissa = code & 7;
    float magnitude;
    if ((code & 0x7F) == 0x7F) {
      magnitude = NAN;
    } else if (exponent == 0) {
      magnitude = std::ldexp(static_cast<float>(mantissa), -9);  // subnormal: m x 2^-9
    } else {
      magnitude = std::ldexp(1.0f + static_cast<float>(mantissa) / 8.0f, exponent - 7);
    }
    table[code] = (code & 0x80) ? -magnitude : magnitude;
  }
  return table;
}

const std::array<float, 256> kFp8Table = MakeFp8Table();

}  // namespace

const char* KvDtypeName(KvDtype dtype) {
  switch (dtype) {
    case KvDtype::kF32:
      return "f32";
    case KvDtype::kBF16:
      return "bf16";
    case KvDtype::kFp8E4M3:
      return "fp8_e4m3";
  }
  return "?";
}

Result<KvDtype> ParseKvDtype(const std::string& name) {
  if (name == "float32" || name == "f32") return KvDtype::kF32;
  if (name == "bfloat16" || name == "bf16") return KvDtype::kBF16;
  if (name == "fp8" || name == "fp8_e4m3") return KvDtype::kFp8E4M3;
  return Status::InvalidArgument("kv cache dtype '" + name +
                                 "': expected float32, bfloat16, fp8 or fp8_e4m3");
}

uint8_t FloatToFp8E4M3(float x) {
  if (std::isnan(x)) return 0x7F;
  const uint8_t sign = std::signbit(x) ? 0x80 : 0x00;
  const float a = std::fabs(x);
  if (a >= kFp8Max) return sign | 0x7E;
  if (a < std::ldexp(1.0f, -6)) {
    // Subnormals, m x 2^-9: m = 8 is the smallest normal number, whose code is 8 too.
    return sign | static_cast<uint8_t>(std::nearbyint(std::ldexp(a, 9)));
  }
  int exponent = 0;
  const float fraction = std::frexp(a, &exponent);  // a = fraction x 2^exponent, [0.5, 1)
  int e = exponent - 1;                             // a = (1 + m / 8) x 2^e
  int m = static_cast<int>(std::nearbyint((std::ldexp(fraction, 1) - 1.0f) * 8.0f));
  if (m == 8) {
    m = 0;
    ++e;
  }
  const int code = ((e + 7) << 3) | m;
  return sign | static_cast<uint8_t>(code > 0x7E ? 0x7E : code);
}

float Fp8E4M3ToFloat(uint8_t code) { return kFp8Table[code]; }

uint16_t FloatToBf16(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  if (std::isnan(x)) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7FFF + ((bits >> 16) & 1);
  return static_cast<uint16_t>(bits >> 16);
}

float Bf16ToFloat(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float x;
  std::memcpy(&x, &bits, sizeof(x));
  return x;
}

int64_t KvCache::BytesPerToken(KvDtype dtype, int64_t layers, int64_t kv_heads, int64_t head_dim) {
  const int64_t per_head = dtype == KvDtype::kF32    ? 4 * head_dim
                           : dtype == KvDtype::kBF16 ? 2 * head_dim
                                                     : head_dim + 4;  // codes and a scale
  return 2 * layers * kv_heads * per_head;
}

void KvCache::Allocate(KvDtype dtype, int64_t layers, int64_t slots, int64_t kv_heads,
                       int64_t head_dim) {
  dtype_ = dtype;
  kv_heads_ = kv_heads;
  head_dim_ = head_dim;
  elem_bytes_ = dtype == KvDtype::kF32 ? 4 : dtype == KvDtype::kBF16 ? 2 : 1;
  bytes_ = BytesPerToken(dtype, layers, kv_heads, head_dim) * slots;
  keys_.clear();
  values_.clear();
  key_scales_.clear();
  value_scales_.clear();
  const size_t data = static_cast<size_t>(slots * kv_heads * head_dim * elem_bytes_);
  for (int64_t i = 0; i < layers; ++i) {
    // Left uninitialized: pages are touched as tokens are written.
    keys_.push_back(std::make_unique_for_overwrite<uint8_t[]>(data));
    values_.push_back(std::make_unique_for_overwrite<uint8_t[]>(data));
    if (dtype == KvDtype::kFp8E4M3) {
      key_scales_.push_back(std::make_unique_for_overwrite<float[]>(slots * kv_heads));
      value_scales_.push_back(std::make_unique_for_overwrite<float[]>(slots * kv_heads));
    }
  }
}

void KvCache::Write(int64_t layer, int64_t slot, const float* k, const float* v) {
  Store(keys_[layer].get(), key_scales_, layer, slot, k);
  Store(values_[layer].get(), value_scales_, layer, slot, v);
}

void KvCache::Store(uint8_t* base, std::vector<std::unique_ptr<float[]>>& scales, int64_t layer,
                    int64_t slot, const float* x) {
  const int64_t n = kv_heads_ * head_dim_;
  uint8_t* out = base + static_cast<size_t>(slot * n * elem_bytes_);
  switch (dtype_) {
    case KvDtype::kF32:
      std::memcpy(out, x, static_cast<size_t>(n) * sizeof(float));
      return;
    case KvDtype::kBF16: {
      auto* bf = reinterpret_cast<uint16_t*>(out);
      for (int64_t i = 0; i < n; ++i) bf[i] = FloatToBf16(x[i]);
      return;
    }
    case KvDtype::kFp8E4M3:
      for (int64_t h = 0; h < kv_heads_; ++h) {
        const float* xh = x + h * head_dim_;
        float amax = 0.0f;
        for (int64_t i = 0; i < head_dim_; ++i) amax = std::max(amax, std::fabs(xh[i]));
        const float scale = amax > 0.0f ? amax / kFp8Max : 1.0f;
        const float inv = 1.0f / scale;
        scales[layer][slot * kv_heads_ + h] = scale;
        for (int64_t i = 0; i < head_dim_; ++i) {
          out[h * head_dim_ + i] = FloatToFp8E4M3(xh[i] * inv);
        }
      }
      return;
  }
}

const float* KvCache::Read(const std::unique_ptr<uint8_t[]>& base,
                           const std::vector<std::unique_ptr<float[]>>& scales, int64_t layer,
                           int64_t slot, int64_t head, float* buf) const {
  const uint8_t* at =
      base.get() + static_cast<size_t>((slot * kv_heads_ + head) * head_dim_ * elem_bytes_);
  switch (dtype_) {
    case KvDtype::kF32:
      return reinterpret_cast<const float*>(at);
    case KvDtype::kBF16: {
      const auto* bf = reinterpret_cast<const uint16_t*>(at);
      for (int64_t i = 0; i < head_dim_; ++i) buf[i] = Bf16ToFloat(bf[i]);
      return buf;
    }
    case KvDtype::kFp8E4M3: {
      const float scale = scales[layer][slot * kv_heads_ + head];
      for (int64_t i = 0; i < head_dim_; ++i) buf[i] = kFp8Table[at[i]] * scale;
      return buf;
    }
  }
  return buf;
}

}  // namespace kiln::native
