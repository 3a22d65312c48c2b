// KvCache: the vllm runtime's paged key and value cache on the CPU. Per layer, keys and values
// are [slots, kv_heads, head_dim] with slot = block * block_size + offset (the engine's slot
// mapping), stored in one of three element types:
//   f32        exact;
//   bf16       each value rounded to the nearest bfloat16 (ties to even): half the bytes;
//   fp8_e4m3   OCP E4M3FN (4 exponent bits, bias 7, 3 mantissa bits, no infinities, largest
//              448), one f32 scale per (slot, kv head): the vector's largest magnitude / 448, so
//              nothing saturates; about a quarter of the bytes (1 + 4 / head_dim per value).
// Writing a token's vectors and reading one head's vector back (as f32) are the whole interface;
// each read depends only on what was written to that slot, never on other slots.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kiln/base/status.h"

namespace kiln::native {

enum class KvDtype { kF32, kBF16, kFp8E4M3 };

const char* KvDtypeName(KvDtype dtype);  // "f32", "bf16", "fp8_e4m3"
// vLLM's --kv-cache-dtype names of a definite type: float32/f32, bfloat16/bf16, fp8/fp8_e4m3.
// "auto" depends on the model and device (planner::MakePlan resolves it: the model's own 16-bit
// type, f32 for an f32 model) and is the caller's to resolve; InvalidArgument otherwise, listing
// the names.
Result<KvDtype> ParseKvDtype(const std::string& name);

// OCP FP8 E4M3FN of `x` rounded to nearest, ties to even; magnitudes past 448 give 448, NaN
// gives 0x7F.
uint8_t FloatToFp8E4M3(float x);
float Fp8E4M3ToFloat(uint8_t code);
// bfloat16 of `x` rounded to nearest, ties to even (NaN stays NaN).
uint16_t FloatToBf16(float x);
float Bf16ToFloat(uint16_t bits);

class KvCache {
 public:
  // Bytes of keys and values per token over all layers.
  static int64_t BytesPerToken(KvDtype dtype, int64_t layers, int64_t kv_heads, int64_t head_dim);

  void Allocate(KvDtype dtype, int64_t layers, int64_t slots, int64_t kv_heads, int64_t head_dim);

  KvDtype dtype() const { return dtype_; }
  int64_t bytes() const { return bytes_; }

  // Stores one token's keys and values (kv_heads x head_dim floats each) at `slot` of `layer`.
  void Write(int64_t layer, int64_t slot, const float* k, const float* v);
  // Head `head`'s key (value) at `slot` of `layer`, as head_dim floats: a pointer into the cache
  // for f32, otherwise `buf` (head_dim floats) filled with the decoded values.
  const float* Key(int64_t layer, int64_t slot, int64_t head, float* buf) const {
    return Read(keys_[layer], key_scales_, layer, slot, head, buf);
  }
  const float* Value(int64_t layer, int64_t slot, int64_t head, float* buf) const {
    return Read(values_[layer], value_scales_, layer, slot, head, buf);
  }
  // A bf16 cache's rows as stored (head_dim values), for kernels that widen them as they read.
  const uint16_t* KeyBf16(int64_t layer, int64_t slot, int64_t head) const {
    return RawBf16(keys_[layer], slot, head);
  }
  const uint16_t* ValueBf16(int64_t layer, int64_t slot, int64_t head) const {
    return RawBf16(values_[layer], slot, head);
  }

 private:
  const uint16_t* RawBf16(const std::unique_ptr<uint8_t[]>& base, int64_t slot,
                          int64_t head) const {
    return reinterpret_cast<const uint16_t*>(base.get()) + (slot * kv_heads_ + head) * head_dim_;
  }
  void Store(uint8_t* base, std::vector<std::unique_ptr<float[]>>& scales, int64_t layer,
             int64_t slot, const float* x);
  const float* Read(const std::unique_ptr<uint8_t[]>& base,
                    const std::vector<std::unique_ptr<float[]>>& scales, int64_t layer,
                    int64_t slot, int64_t head, float* buf) const;

  KvDtype dtype_ = KvDtype::kF32;
  int64_t kv_heads_ = 0, head_dim_ = 0, elem_bytes_ = 4;
  int64_t bytes_ = 0;
  std::vector<std::unique_ptr<uint8_t[]>> keys_, values_;
  // fp8 only: per layer, [slots, kv_heads] scales.
  std::vector<std::unique_ptr<float[]>> key_scales_, value_scales_;
};

}  // namespace kiln::native
