// GGUF v2/v3 reader: metadata of every type and tensor descriptors, over a memory map.
//
// The file is validated on open: every length and offset is checked against the file size, so
// a truncated or corrupted file yields an error naming the file, the byte offset and what was
// expected, never a crash. Tensor data stays in the map; views are zero-copy.
// Spec: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/base/mapped_file.h"
#include "kiln/base/status.h"

namespace kiln::gguf {

enum class ValueType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

// ggml tensor types (the numbering is ggml's; gaps are types Kiln does not read).
enum class TensorType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kBF16 = 30,
};

const char* TensorTypeName(TensorType type);  // "Q4_K", ...; "unknown" otherwise

// Elements per block and bytes per block; {0, 0} for a type Kiln does not know.
struct BlockLayout {
  uint32_t elements;
  uint32_t bytes;
};
BlockLayout BlockLayoutOf(TensorType type);

// One metadata value. Scalars are widened into the matching 64-bit slot; arrays keep their
// element type and hold their elements in `array` (nested arrays are allowed by the format).
struct Value {
  ValueType type = ValueType::kUint8;
  uint64_t u = 0;                            // kUint8/16/32/64 and kBool (0 or 1)
  int64_t i = 0;                             // kInt8/16/32/64
  double f = 0;                              // kFloat32/64
  std::string s;                             // kString
  ValueType array_type = ValueType::kUint8;  // kArray: element type
  std::vector<Value> array;                  // kArray: elements

  bool is_integer() const;
  bool is_float() const;
};

struct MetadataEntry {
  std::string key;
  Value value;
};

struct TensorInfo {
  std::string name;
  std::vector<uint64_t> dims;  // GGUF order: dims[0] is the fastest-varying (row length)
  TensorType type = TensorType::kF32;
  uint64_t offset = 0;  // relative to the start of the data section
  uint64_t n_elements = 0;
  uint64_t n_bytes = 0;
};

class GgufFile {
 public:
  // Maps and parses `path`.
  static Result<GgufFile> Open(const std::string& path);
  // Parses bytes that the caller keeps alive (fuzzing, tests). `name` appears in errors.
  static Result<GgufFile> Parse(std::span<const uint8_t> bytes, std::string name);

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const std::string& name() const { return name_; }
  // Where tensor data begins: the end of the tensor infos, rounded up to alignment().
  uint64_t data_offset() const { return data_offset_; }
  const std::vector<MetadataEntry>& metadata() const { return metadata_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }

  const Value* Find(std::string_view key) const;
  const TensorInfo* FindTensor(std::string_view name) const;

  // Typed lookups. std::nullopt when the key is absent or holds another type; integers of any
  // width convert when the value fits.
  std::optional<std::string> GetString(std::string_view key) const;
  std::optional<uint64_t> GetUint(std::string_view key) const;
  std::optional<int64_t> GetInt(std::string_view key) const;
  std::optional<double> GetFloat(std::string_view key) const;
  std::optional<bool> GetBool(std::string_view key) const;
  std::optional<std::vector<std::string>> GetStringArray(std::string_view key) const;
  std::optional<std::vector<float>> GetFloatArray(std::string_view key) const;
  std::optional<std::vector<int64_t>> GetIntArray(std::string_view key) const;

  // The bytes of one tensor, inside the file's map.
  std::span<const uint8_t> TensorData(const TensorInfo& tensor) const;

 private:
  std::string name_;
  std::shared_ptr<MappedFile> file_;  // null when parsed from caller-owned bytes
  std::span<const uint8_t> bytes_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<MetadataEntry> metadata_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;  // name -> index in tensors_
};

// Dequantizes `n_elements` values of `type` from `data` into `out` (which must hold
// n_elements). Bit-exact with ggml's reference dequantization (and the `gguf` Python package).
// Errors if the type is unsupported or `data` is too short.
Status DequantizeToF32(TensorType type, std::span<const uint8_t> data, uint64_t n_elements,
                       float* out);

}  // namespace kiln::gguf
