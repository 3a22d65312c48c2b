// safetensors: Hugging Face's tensor file format (8-byte header length, JSON header, raw data).
//
// Reading maps the file and validates the header on open: every dtype, shape and offset is
// checked against the data section, and the tensors must tile it exactly (as the reference Rust
// implementation requires), so a corrupt file yields an error naming the file, the byte offset
// and what was expected. Tensor views point into the map (zero-copy).
// Writing streams tensor by tensor, laid out as the reference implementation does: tensors
// ordered by dtype (widest first) then name, header padded with spaces to a multiple of 8.
// Spec: https://github.com/huggingface/safetensors#format
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/base/mapped_file.h"
#include "kiln/base/status.h"

namespace kiln::safetensors {

enum class Dtype {
  kBool,
  kU8,
  kI8,
  kF8_E5M2,
  kF8_E4M3,
  kI16,
  kU16,
  kF16,
  kBF16,
  kI32,
  kU32,
  kF32,
  kF64,
  kI64,
  kU64,
};

const char* DtypeName(Dtype dtype);  // "F32", "BF16", ... as written in headers
std::optional<Dtype> ParseDtype(std::string_view name);
size_t DtypeSize(Dtype dtype);  // bytes per element

// One tensor inside a mapped file.
struct TensorView {
  std::string name;
  Dtype dtype = Dtype::kF32;
  std::vector<int64_t> shape;
  uint64_t n_elements = 0;
  std::span<const uint8_t> data;  // n_elements * DtypeSize(dtype) bytes

  // The data as T when T matches the dtype's size and the data is aligned for T (it is in files
  // Kiln writes); an empty span otherwise.
  template <typename T>
  std::span<const T> As() const {
    if (sizeof(T) != DtypeSize(dtype) || reinterpret_cast<uintptr_t>(data.data()) % alignof(T)) {
      return {};
    }
    return {reinterpret_cast<const T*>(data.data()), static_cast<size_t>(n_elements)};
  }
};

// Converts an F32, F16 or BF16 tensor to f32 (`out` holds n_elements).
Status ToF32(const TensorView& tensor, float* out);

class SafetensorsFile {
 public:
  static Result<SafetensorsFile> Open(const std::string& path);
  // Parses bytes that the caller keeps alive (fuzzing, tests). `name` appears in errors.
  static Result<SafetensorsFile> Parse(std::span<const uint8_t> bytes, std::string name);

  const std::string& name() const { return name_; }
  const std::vector<TensorView>& tensors() const { return tensors_; }  // in file order
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const TensorView* Find(std::string_view name) const;

 private:
  std::string name_;
  std::shared_ptr<MappedFile> file_;  // null when parsed from caller-owned bytes
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t, std::less<>> index_;
  std::map<std::string, std::string> metadata_;
};

// A model folder's weights: model.safetensors, or the shards that
// model.safetensors.index.json names (its weight_map says which shard holds each tensor).
class SafetensorsModel {
 public:
  static Result<SafetensorsModel> OpenFolder(const std::string& dir);

  // Movable only: the index points into files_.
  SafetensorsModel(SafetensorsModel&&) = default;
  SafetensorsModel& operator=(SafetensorsModel&&) = default;
  SafetensorsModel(const SafetensorsModel&) = delete;
  SafetensorsModel& operator=(const SafetensorsModel&) = delete;

  const TensorView* Find(std::string_view name) const;
  std::vector<std::string> TensorNames() const;  // sorted
  const std::vector<SafetensorsFile>& files() const { return files_; }

 private:
  SafetensorsModel() = default;
  std::vector<SafetensorsFile> files_;
  std::map<std::string, const TensorView*, std::less<>> index_;
};

struct TensorSpec {
  std::string name;
  Dtype dtype = Dtype::kF32;
  std::vector<int64_t> shape;
};

// Writes a safetensors file tensor by tensor, so a model never needs to be whole in memory.
// Create() writes the header; then Write() each tensor in order() exactly once; then Finish().
class SafetensorsWriter {
 public:
  static Result<SafetensorsWriter> Create(const std::string& path, std::vector<TensorSpec> specs,
                                          const std::map<std::string, std::string>& metadata = {});
  SafetensorsWriter(SafetensorsWriter&&) noexcept;
  SafetensorsWriter& operator=(SafetensorsWriter&&) noexcept;
  ~SafetensorsWriter();

  // The order in which tensors are laid out and must be written.
  const std::vector<TensorSpec>& order() const { return specs_; }
  // Writes the next tensor; `name` must be order()[i] for the i-th call, and `bytes` its size.
  Status Write(std::string_view name, std::span<const uint8_t> bytes);
  // Flushes and closes; errors if a tensor was not written.
  Status Finish();

 private:
  SafetensorsWriter() = default;
  std::string path_;
  std::FILE* file_ = nullptr;
  std::vector<TensorSpec> specs_;
  size_t next_ = 0;
};

// The header (length prefix, JSON and padding) for tensors already in layout order. Throws
// nlohmann::json::exception if a name or metadata string is not UTF-8 (Create() catches it).
std::string EncodeHeader(const std::vector<TensorSpec>& ordered,
                         const std::map<std::string, std::string>& metadata);
// Sorts specs into the reference layout order: dtype (widest first), then name.
void SortForLayout(std::vector<TensorSpec>& specs);

}  // namespace kiln::safetensors
