// DequantizeToF32 (declared in gguf.h): ggml block formats to f32.
//
// Bit-exactness with the `gguf` Python package (gguf/quants.py) depends on doing the same f32
// operations in the same order: each product and difference is rounded to f32 before the next
// operation, so every step is its own statement (a fused multiply-add would round once and give
// different bits). Block layouts follow ggml-common.h.
#include <cstring>
#include <string>

#include "kiln/base/half.h"
#include "kiln/formats/gguf.h"

namespace kiln::gguf {
namespace {

constexpr int kQK = 256;  // QK_K: elements per super-block

inline float Half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return Fp16ToFloat(h);
}

// Stops the compiler from contracting `a * b` with a following add into one fused operation.
inline float Mul(float a, float b) {
  volatile float p = a * b;
  return p;
}

void DequantF32(const uint8_t* src, uint64_t n, float* out) { std::memcpy(out, src, n * 4); }

void DequantF16(const uint8_t* src, uint64_t n, float* out) {
  for (uint64_t i = 0; i < n; ++i) out[i] = Half(src + 2 * i);
}

void DequantBF16(const uint8_t* src, uint64_t n, float* out) {
  for (uint64_t i = 0; i < n; ++i) {
    uint16_t b;
    std::memcpy(&b, src + 2 * i, 2);
    out[i] = Bf16ToFloat(b);
  }
}

void DequantF64(const uint8_t* src, uint64_t n, float* out) {
  for (uint64_t i = 0; i < n; ++i) {
    double d;
    std::memcpy(&d, src + 8 * i, 8);
    out[i] = static_cast<float>(d);
  }
}

// Q4_0: d (f16), 16 bytes of nibbles; low nibbles are elements 0..15, high ones 16..31.
void BlockQ4_0(const uint8_t* b, float* out) {
  float d = Half(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < 16; ++j) {
    out[j] = d * static_cast<float>((qs[j] & 0x0F) - 8);
    out[j + 16] = d * static_cast<float>((qs[j] >> 4) - 8);
  }
}

// Q4_1: d, m (f16), nibbles as Q4_0; x = d*q + m.
void BlockQ4_1(const uint8_t* b, float* out) {
  float d = Half(b);
  float m = Half(b + 2);
  const uint8_t* qs = b + 4;
  for (int j = 0; j < 16; ++j) {
    out[j] = Mul(d, static_cast<float>(qs[j] & 0x0F)) + m;
    out[j + 16] = Mul(d, static_cast<float>(qs[j] >> 4)) + m;
  }
}

// Q5_0: d (f16), qh (32 high bits), nibbles; q is 5 bits minus 16.
void BlockQ5_0(const uint8_t* b, float* out) {
  float d = Half(b);
  uint32_t qh;
  std::memcpy(&qh, b + 2, 4);
  const uint8_t* qs = b + 6;
  for (int j = 0; j < 16; ++j) {
    int lo = (qs[j] & 0x0F) | static_cast<int>(((qh >> j) & 1u) << 4);
    int hi = (qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
    out[j] = d * static_cast<float>(lo - 16);
    out[j + 16] = d * static_cast<float>(hi - 16);
  }
}

// Q5_1: d, m (f16), qh, nibbles; x = d*q + m with q unsigned 5 bits.
void BlockQ5_1(const uint8_t* b, float* out) {
  float d = Half(b);
  float m = Half(b + 2);
  uint32_t qh;
  std::memcpy(&qh, b + 4, 4);
  const uint8_t* qs = b + 8;
  for (int j = 0; j < 16; ++j) {
    int lo = (qs[j] & 0x0F) | static_cast<int>(((qh >> j) & 1u) << 4);
    int hi = (qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
    out[j] = Mul(d, static_cast<float>(lo)) + m;
    out[j + 16] = Mul(d, static_cast<float>(hi)) + m;
  }
}

// Q8_0: d (f16), 32 int8.
void BlockQ8_0(const uint8_t* b, float* out) {
  float d = Half(b);
  for (int j = 0; j < 32; ++j) out[j] = static_cast<float>(static_cast<int8_t>(b[2 + j])) * d;
}

// Q8_1: d, s (f16), 32 int8; s is a precomputed sum that dequantization ignores.
void BlockQ8_1(const uint8_t* b, float* out) {
  float d = Half(b);
  for (int j = 0; j < 32; ++j) out[j] = static_cast<float>(static_cast<int8_t>(b[4 + j])) * d;
}

// Q2_K: scales[16] (4-bit scale | 4-bit min), qs[64] (2 bits), d, dmin (f16).
void BlockQ2_K(const uint8_t* b, float* out) {
  const uint8_t* scales = b;
  const uint8_t* qs = b + 16;
  float d = Half(b + 80);
  float dmin = Half(b + 82);
  float dl[16], ml[16];
  for (int s = 0; s < 16; ++s) {
    dl[s] = d * static_cast<float>(scales[s] & 0x0F);
    ml[s] = dmin * static_cast<float>(scales[s] >> 4);
  }
  for (int c = 0; c < 2; ++c) {
    for (int shift = 0; shift < 4; ++shift) {
      for (int l = 0; l < 32; ++l) {
        int idx = c * 128 + shift * 32 + l;
        float q = static_cast<float>((qs[c * 32 + l] >> (2 * shift)) & 3);
        out[idx] = Mul(dl[idx / 16], q) - ml[idx / 16];
      }
    }
  }
}

// Q3_K: hmask[32], qs[64] (low 2 bits), scales[12] (6-bit, packed), d (f16).
void BlockQ3_K(const uint8_t* b, float* out) {
  const uint8_t* hmask = b;
  const uint8_t* qs = b + 32;
  const uint8_t* sc = b + 96;
  float d = Half(b + 108);
  float dl[16];
  for (int i = 0; i < 16; ++i) {
    int low = (sc[i % 8] >> (4 * (i / 8))) & 0x0F;
    int high = (sc[8 + i % 4] >> (2 * (i / 4))) & 0x03;
    dl[i] = d * static_cast<float>(static_cast<int8_t>(low | (high << 4)) - 32);
  }
  for (int c = 0; c < 2; ++c) {
    for (int shift = 0; shift < 4; ++shift) {
      for (int l = 0; l < 32; ++l) {
        int idx = c * 128 + shift * 32 + l;
        int low = (qs[c * 32 + l] >> (2 * shift)) & 3;
        int hbit = ((hmask[l] >> (idx / 32)) & 1) ^ 1;  // a set bit means no offset
        out[idx] = dl[idx / 16] * static_cast<float>(low - (hbit << 2));
      }
    }
  }
}

// The 6-bit scales and mins of Q4_K and Q5_K, packed into 12 bytes.
void ScaleMinK4(const uint8_t* s, uint8_t sc[8], uint8_t mn[8]) {
  for (int j = 0; j < 4; ++j) {
    sc[j] = s[j] & 0x3F;
    mn[j] = s[4 + j] & 0x3F;
    sc[4 + j] = static_cast<uint8_t>((s[8 + j] & 0x0F) | ((s[j] >> 2) & 0x30));
    mn[4 + j] = static_cast<uint8_t>((s[8 + j] >> 4) | ((s[4 + j] >> 2) & 0x30));
  }
}

// Q4_K: d, dmin (f16), scales[12], qs[128]; sub-block s of 32 uses nibble s%2 of bytes
// 32*(s/2)...
void BlockQ4_K(const uint8_t* b, float* out) {
  float d = Half(b);
  float dmin = Half(b + 2);
  uint8_t sc[8], mn[8];
  ScaleMinK4(b + 4, sc, mn);
  const uint8_t* qs = b + 16;
  for (int s = 0; s < 8; ++s) {
    float ds = d * static_cast<float>(sc[s]);
    float ms = dmin * static_cast<float>(mn[s]);
    int shift = 4 * (s % 2);
    for (int l = 0; l < 32; ++l) {
      float q = static_cast<float>((qs[(s / 2) * 32 + l] >> shift) & 0x0F);
      out[s * 32 + l] = Mul(ds, q) - ms;
    }
  }
}

// Q5_K: as Q4_K plus qh[32]: bit s of qh[l] is the fifth bit of element l of sub-block s.
void BlockQ5_K(const uint8_t* b, float* out) {
  float d = Half(b);
  float dmin = Half(b + 2);
  uint8_t sc[8], mn[8];
  ScaleMinK4(b + 4, sc, mn);
  const uint8_t* qh = b + 16;
  const uint8_t* qs = b + 48;
  for (int s = 0; s < 8; ++s) {
    float ds = d * static_cast<float>(sc[s]);
    float ms = dmin * static_cast<float>(mn[s]);
    int shift = 4 * (s % 2);
    for (int l = 0; l < 32; ++l) {
      int q = ((qs[(s / 2) * 32 + l] >> shift) & 0x0F) | (((qh[l] >> s) & 1) << 4);
      out[s * 32 + l] = Mul(ds, static_cast<float>(q)) - ms;
    }
  }
}

// Q6_K: ql[128] (low 4 bits), qh[64] (high 2 bits), scales[16] (int8), d (f16).
void BlockQ6_K(const uint8_t* b, float* out) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  float d = Half(b + 208);
  float ds[16];
  for (int i = 0; i < 16; ++i) ds[i] = d * static_cast<float>(sc[i]);
  for (int c = 0; c < 2; ++c) {
    for (int i = 0; i < 128; ++i) {
      int low = (ql[c * 64 + i % 64] >> (4 * (i / 64))) & 0x0F;
      int high = (qh[c * 32 + i % 32] >> (2 * (i / 32))) & 0x03;
      int idx = c * 128 + i;
      out[idx] = ds[idx / 16] * static_cast<float>(static_cast<int8_t>(low | (high << 4)) - 32);
    }
  }
}

// Q8_K: d (f32), qs[256] (int8), bsums[16] (unused here).
void BlockQ8_K(const uint8_t* b, float* out) {
  float d;
  std::memcpy(&d, b, 4);
  for (int j = 0; j < kQK; ++j) out[j] = d * static_cast<float>(static_cast<int8_t>(b[4 + j]));
}

using BlockFn = void (*)(const uint8_t*, float*);

BlockFn BlockFunction(TensorType type) {
  switch (type) {
    case TensorType::kQ4_0:
      return BlockQ4_0;
    case TensorType::kQ4_1:
      return BlockQ4_1;
    case TensorType::kQ5_0:
      return BlockQ5_0;
    case TensorType::kQ5_1:
      return BlockQ5_1;
    case TensorType::kQ8_0:
      return BlockQ8_0;
    case TensorType::kQ8_1:
      return BlockQ8_1;
    case TensorType::kQ2_K:
      return BlockQ2_K;
    case TensorType::kQ3_K:
      return BlockQ3_K;
    case TensorType::kQ4_K:
      return BlockQ4_K;
    case TensorType::kQ5_K:
      return BlockQ5_K;
    case TensorType::kQ6_K:
      return BlockQ6_K;
    case TensorType::kQ8_K:
      return BlockQ8_K;
    default:
      return nullptr;
  }
}

}  // namespace

Status DequantizeToF32(TensorType type, std::span<const uint8_t> data, uint64_t n_elements,
                       float* out) {
  BlockLayout layout = BlockLayoutOf(type);
  if (layout.elements == 0) {
    return Status::Unsupported("unknown ggml tensor type " +
                               std::to_string(static_cast<uint32_t>(type)));
  }
  if (n_elements % layout.elements != 0) {
    return Status::InvalidArgument(std::to_string(n_elements) + " elements of " +
                                   TensorTypeName(type) + " are not whole " +
                                   std::to_string(layout.elements) + "-element blocks");
  }
  if (n_elements == 0) return Status::Ok();  // `out` and `data` may then be null
  uint64_t n_blocks = n_elements / layout.elements;
  if (data.size() / layout.bytes < n_blocks) {
    return Status::InvalidArgument(
        std::to_string(n_elements) + " elements of " + TensorTypeName(type) + " need " +
        std::to_string(n_blocks * layout.bytes) + " bytes, got " + std::to_string(data.size()));
  }
  const uint8_t* src = data.data();
  switch (type) {
    case TensorType::kF32:
      DequantF32(src, n_elements, out);
      return Status::Ok();
    case TensorType::kF16:
      DequantF16(src, n_elements, out);
      return Status::Ok();
    case TensorType::kBF16:
      DequantBF16(src, n_elements, out);
      return Status::Ok();
    case TensorType::kF64:
      DequantF64(src, n_elements, out);
      return Status::Ok();
    default:
      break;
  }
  BlockFn fn = BlockFunction(type);
  if (fn == nullptr) {
    return Status::Unsupported(std::string("dequantizing ") + TensorTypeName(type) +
                               " (ggml type " + std::to_string(static_cast<uint32_t>(type)) +
                               ") is not implemented");
  }
  for (uint64_t i = 0; i < n_blocks; ++i) {
    fn(src + i * layout.bytes, out + i * layout.elements);
  }
  return Status::Ok();
}

}  // namespace kiln::gguf
