#include "kiln/formats/gguf.h"

#include <cstring>
#include <limits>
#include <set>
#include <utility>

namespace kiln::gguf {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as little-endian uint32
constexpr int kMaxArrayDepth = 8;        // nesting beyond this is corrupt, not a real model
constexpr uint32_t kMaxDims = 4;         // GGML_MAX_DIMS

// Smallest encoding of one value of `type`: bounds an element count by the bytes left, so a
// corrupt count is caught before anything is allocated for it.
uint64_t MinEncodedSize(ValueType type) {
  switch (type) {
    case ValueType::kUint8:
    case ValueType::kInt8:
    case ValueType::kBool:
      return 1;
    case ValueType::kUint16:
    case ValueType::kInt16:
      return 2;
    case ValueType::kUint32:
    case ValueType::kInt32:
    case ValueType::kFloat32:
      return 4;
    case ValueType::kUint64:
    case ValueType::kInt64:
    case ValueType::kFloat64:
    case ValueType::kString:  // the 8-byte length
      return 8;
    case ValueType::kArray:  // element type + count
      return 12;
  }
  return 1;
}

bool IsKnownValueType(uint32_t t) { return t <= static_cast<uint32_t>(ValueType::kFloat64); }

// A cursor over the file with bounds-checked little-endian reads. Every failure names the file,
// the offset where the read started and what was expected there.
class Reader {
 public:
  Reader(std::span<const uint8_t> bytes, const std::string& name) : bytes_(bytes), name_(name) {}

  uint64_t offset() const { return pos_; }
  uint64_t remaining() const { return bytes_.size() - pos_; }

  Status Error(uint64_t at, const std::string& what) const {
    return Status::InvalidArgument(name_ + ": offset " + std::to_string(at) + ": " + what);
  }

  template <typename T>
  Result<T> Read(const char* what) {
    if (remaining() < sizeof(T)) {
      return Error(pos_, std::string("expected ") + what + " (" + std::to_string(sizeof(T)) +
                             " bytes), but the file ends at " + std::to_string(bytes_.size()));
    }
    T v;
    std::memcpy(&v, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  Result<std::string> ReadString(const char* what) {
    uint64_t at = pos_;
    KILN_ASSIGN_OR_RETURN(uint64_t len, Read<uint64_t>(what));
    if (len > remaining()) {
      return Error(at, std::string("expected ") + what + " of " + std::to_string(len) +
                           " bytes, but only " + std::to_string(remaining()) + " remain");
    }
    std::string s(reinterpret_cast<const char*>(bytes_.data() + pos_), len);
    pos_ += len;
    return s;
  }

 private:
  std::span<const uint8_t> bytes_;
  const std::string& name_;
  uint64_t pos_ = 0;
};

Status ReadValue(Reader& r, ValueType type, int depth, Value* out);

Status ReadArray(Reader& r, int depth, Value* out) {
  uint64_t at = r.offset();
  if (depth >= kMaxArrayDepth) {
    return r.Error(at, "arrays nested deeper than " + std::to_string(kMaxArrayDepth));
  }
  KILN_ASSIGN_OR_RETURN(uint32_t elem_type, r.Read<uint32_t>("array element type"));
  if (!IsKnownValueType(elem_type)) {
    return r.Error(at, "expected an array element type (0..12), got " + std::to_string(elem_type));
  }
  uint64_t count_at = r.offset();
  KILN_ASSIGN_OR_RETURN(uint64_t count, r.Read<uint64_t>("array length"));
  out->array_type = static_cast<ValueType>(elem_type);
  uint64_t min_size = MinEncodedSize(out->array_type);
  if (count > r.remaining() / min_size) {
    return r.Error(count_at, "array of " + std::to_string(count) +
                                 " elements does not fit in the " + std::to_string(r.remaining()) +
                                 " bytes that remain");
  }
  out->array.resize(count);
  for (uint64_t i = 0; i < count; ++i) {
    KILN_RETURN_IF_ERROR(ReadValue(r, out->array_type, depth + 1, &out->array[i]));
  }
  return Status::Ok();
}

Status ReadValue(Reader& r, ValueType type, int depth, Value* out) {
  out->type = type;
  switch (type) {
    case ValueType::kUint8: {
      KILN_ASSIGN_OR_RETURN(out->u, r.Read<uint8_t>("uint8 value"));
      return Status::Ok();
    }
    case ValueType::kInt8: {
      KILN_ASSIGN_OR_RETURN(out->i, r.Read<int8_t>("int8 value"));
      return Status::Ok();
    }
    case ValueType::kUint16: {
      KILN_ASSIGN_OR_RETURN(out->u, r.Read<uint16_t>("uint16 value"));
      return Status::Ok();
    }
    case ValueType::kInt16: {
      KILN_ASSIGN_OR_RETURN(out->i, r.Read<int16_t>("int16 value"));
      return Status::Ok();
    }
    case ValueType::kUint32: {
      KILN_ASSIGN_OR_RETURN(out->u, r.Read<uint32_t>("uint32 value"));
      return Status::Ok();
    }
    case ValueType::kInt32: {
      KILN_ASSIGN_OR_RETURN(out->i, r.Read<int32_t>("int32 value"));
      return Status::Ok();
    }
    case ValueType::kUint64: {
      KILN_ASSIGN_OR_RETURN(out->u, r.Read<uint64_t>("uint64 value"));
      return Status::Ok();
    }
    case ValueType::kInt64: {
      KILN_ASSIGN_OR_RETURN(out->i, r.Read<int64_t>("int64 value"));
      return Status::Ok();
    }
    case ValueType::kFloat32: {
      KILN_ASSIGN_OR_RETURN(out->f, r.Read<float>("float32 value"));
      return Status::Ok();
    }
    case ValueType::kFloat64: {
      KILN_ASSIGN_OR_RETURN(out->f, r.Read<double>("float64 value"));
      return Status::Ok();
    }
    case ValueType::kBool: {
      uint64_t at = r.offset();
      KILN_ASSIGN_OR_RETURN(uint8_t b, r.Read<uint8_t>("bool value"));
      if (b > 1) return r.Error(at, "expected a bool (0 or 1), got " + std::to_string(b));
      out->u = b;
      return Status::Ok();
    }
    case ValueType::kString: {
      KILN_ASSIGN_OR_RETURN(out->s, r.ReadString("string value"));
      return Status::Ok();
    }
    case ValueType::kArray:
      return ReadArray(r, depth, out);
  }
  return r.Error(r.offset(), "unknown value type");
}

bool MulOverflows(uint64_t a, uint64_t b, uint64_t* out) {
  return __builtin_mul_overflow(a, b, out);
}

}  // namespace

const char* TensorTypeName(TensorType type) {
  switch (type) {
    case TensorType::kF32:
      return "F32";
    case TensorType::kF16:
      return "F16";
    case TensorType::kQ4_0:
      return "Q4_0";
    case TensorType::kQ4_1:
      return "Q4_1";
    case TensorType::kQ5_0:
      return "Q5_0";
    case TensorType::kQ5_1:
      return "Q5_1";
    case TensorType::kQ8_0:
      return "Q8_0";
    case TensorType::kQ8_1:
      return "Q8_1";
    case TensorType::kQ2_K:
      return "Q2_K";
    case TensorType::kQ3_K:
      return "Q3_K";
    case TensorType::kQ4_K:
      return "Q4_K";
    case TensorType::kQ5_K:
      return "Q5_K";
    case TensorType::kQ6_K:
      return "Q6_K";
    case TensorType::kQ8_K:
      return "Q8_K";
    case TensorType::kI8:
      return "I8";
    case TensorType::kI16:
      return "I16";
    case TensorType::kI32:
      return "I32";
    case TensorType::kI64:
      return "I64";
    case TensorType::kF64:
      return "F64";
    case TensorType::kBF16:
      return "BF16";
  }
  return "unknown";
}

BlockLayout BlockLayoutOf(TensorType type) {
  constexpr uint32_t kQK_K = 256;
  // Every ggml type, including those Kiln cannot dequantize, so a file that holds them still
  // opens (its metadata and tokenizer stay readable).
  switch (static_cast<uint32_t>(type)) {
    case 0:
      return {1, 4};  // F32
    case 1:
      return {1, 2};  // F16
    case 2:
      return {32, 2 + 16};  // Q4_0
    case 3:
      return {32, 2 + 2 + 16};  // Q4_1
    case 6:
      return {32, 2 + 4 + 16};  // Q5_0
    case 7:
      return {32, 2 + 2 + 4 + 16};  // Q5_1
    case 8:
      return {32, 2 + 32};  // Q8_0
    case 9:
      return {32, 4 + 4 + 32};  // Q8_1
    case 10:
      return {kQK_K, 2 + 2 + kQK_K / 16 + kQK_K / 4};  // Q2_K
    case 11:
      return {kQK_K, 2 + kQK_K / 4 + kQK_K / 8 + 12};  // Q3_K
    case 12:
      return {kQK_K, 2 + 2 + kQK_K / 2 + 12};  // Q4_K
    case 13:
      return {kQK_K, 2 + 2 + kQK_K / 2 + kQK_K / 8 + 12};  // Q5_K
    case 14:
      return {kQK_K, 2 + kQK_K / 2 + kQK_K / 4 + kQK_K / 16};  // Q6_K
    case 15:
      return {kQK_K, 4 + kQK_K + kQK_K / 8};  // Q8_K
    case 16:
      return {kQK_K, 2 + kQK_K / 4};  // IQ2_XXS
    case 17:
      return {kQK_K, 2 + kQK_K / 4 + kQK_K / 32};  // IQ2_XS
    case 18:
      return {kQK_K, 2 + kQK_K / 4 + kQK_K / 8};  // IQ3_XXS
    case 19:
      return {kQK_K, 2 + kQK_K / 8 + kQK_K / 16};  // IQ1_S
    case 20:
      return {32, 2 + 16};  // IQ4_NL
    case 21:
      return {kQK_K, 2 + kQK_K / 4 + kQK_K / 8 + kQK_K / 32 + 4};  // IQ3_S
    case 22:
      return {kQK_K, 2 + kQK_K / 4 + kQK_K / 16};  // IQ2_S
    case 23:
      return {kQK_K, 2 + 2 + kQK_K / 2 + kQK_K / 64};  // IQ4_XS
    case 24:
      return {1, 1};  // I8
    case 25:
      return {1, 2};  // I16
    case 26:
      return {1, 4};  // I32
    case 27:
      return {1, 8};  // I64
    case 28:
      return {1, 8};  // F64
    case 29:
      return {kQK_K, kQK_K / 8 + kQK_K / 16 + kQK_K / 32};  // IQ1_M
    case 30:
      return {1, 2};  // BF16
    case 34:
      return {kQK_K, 2 + 4 * 13};  // TQ1_0
    case 35:
      return {kQK_K, 2 + 64};  // TQ2_0
    case 39:
      return {32, 1 + 16};  // MXFP4
    case 40:
      return {64, 4 + 32};  // NVFP4
    case 41:
      return {128, 2 + 16};  // Q1_0
  }
  return {0, 0};
}

bool Value::is_integer() const {
  switch (type) {
    case ValueType::kUint8:
    case ValueType::kInt8:
    case ValueType::kUint16:
    case ValueType::kInt16:
    case ValueType::kUint32:
    case ValueType::kInt32:
    case ValueType::kUint64:
    case ValueType::kInt64:
      return true;
    default:
      return false;
  }
}

bool Value::is_float() const { return type == ValueType::kFloat32 || type == ValueType::kFloat64; }

Result<GgufFile> GgufFile::Open(const std::string& path) {
  KILN_ASSIGN_OR_RETURN(MappedFile mapped, MappedFile::Open(path));
  auto file = std::make_shared<MappedFile>(std::move(mapped));
  KILN_ASSIGN_OR_RETURN(GgufFile gguf, Parse(file->bytes(), path));
  gguf.file_ = std::move(file);
  return gguf;
}

Result<GgufFile> GgufFile::Parse(std::span<const uint8_t> bytes, std::string name) {
  GgufFile g;
  g.name_ = std::move(name);
  g.bytes_ = bytes;
  Reader r(bytes, g.name_);

  KILN_ASSIGN_OR_RETURN(uint32_t magic, r.Read<uint32_t>("the GGUF magic"));
  if (magic != kMagic) return r.Error(0, "expected the magic bytes \"GGUF\"");
  KILN_ASSIGN_OR_RETURN(g.version_, r.Read<uint32_t>("the GGUF version"));
  if (g.version_ != 2 && g.version_ != 3) {
    return Status::Unsupported(g.name_ + ": offset 4: expected GGUF version 2 or 3, got " +
                               std::to_string(g.version_));
  }
  uint64_t tensor_count_at = r.offset();
  KILN_ASSIGN_OR_RETURN(uint64_t tensor_count, r.Read<uint64_t>("the tensor count"));
  uint64_t kv_count_at = r.offset();
  KILN_ASSIGN_OR_RETURN(uint64_t kv_count, r.Read<uint64_t>("the metadata count"));
  // A key-value pair takes at least 8 (key length) + 4 (type) + 1 bytes.
  if (kv_count > r.remaining() / 13) {
    return r.Error(kv_count_at,
                   "metadata count " + std::to_string(kv_count) + " does not fit in the file");
  }
  // A tensor info takes at least 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset) bytes.
  if (tensor_count > r.remaining() / 24) {
    return r.Error(tensor_count_at,
                   "tensor count " + std::to_string(tensor_count) + " does not fit in the file");
  }

  std::set<std::string, std::less<>> seen_keys;
  g.metadata_.reserve(kv_count);
  for (uint64_t k = 0; k < kv_count; ++k) {
    uint64_t key_at = r.offset();
    MetadataEntry entry;
    KILN_ASSIGN_OR_RETURN(entry.key, r.ReadString("a metadata key"));
    if (!seen_keys.insert(entry.key).second) {
      return r.Error(key_at, "duplicate metadata key \"" + entry.key + "\"");
    }
    uint64_t type_at = r.offset();
    KILN_ASSIGN_OR_RETURN(uint32_t type, r.Read<uint32_t>("a metadata value type"));
    if (!IsKnownValueType(type)) {
      return r.Error(type_at, "expected a value type (0..12) for \"" + entry.key + "\", got " +
                                  std::to_string(type));
    }
    KILN_RETURN_IF_ERROR(ReadValue(r, static_cast<ValueType>(type), 0, &entry.value));
    if (entry.key == "general.alignment") {
      const Value& v = entry.value;
      if (v.type != ValueType::kUint32 || v.u == 0 || (v.u & (v.u - 1)) != 0) {
        return r.Error(type_at, "expected general.alignment to be a uint32 power of two");
      }
      g.alignment_ = v.u;
    }
    g.metadata_.push_back(std::move(entry));
  }

  std::set<std::string, std::less<>> seen_tensors;
  std::vector<uint64_t> offset_positions;  // where each tensor's offset field is, for errors
  g.tensors_.reserve(tensor_count);
  for (uint64_t t = 0; t < tensor_count; ++t) {
    uint64_t info_at = r.offset();
    TensorInfo info;
    KILN_ASSIGN_OR_RETURN(info.name, r.ReadString("a tensor name"));
    if (!seen_tensors.insert(info.name).second) {
      return r.Error(info_at, "duplicate tensor name \"" + info.name + "\"");
    }
    uint64_t dims_at = r.offset();
    KILN_ASSIGN_OR_RETURN(uint32_t n_dims, r.Read<uint32_t>("a tensor's number of dimensions"));
    if (n_dims > kMaxDims) {
      return r.Error(dims_at, "expected at most " + std::to_string(kMaxDims) +
                                  " dimensions for tensor \"" + info.name + "\", got " +
                                  std::to_string(n_dims));
    }
    info.n_elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t dim_at = r.offset();
      KILN_ASSIGN_OR_RETURN(uint64_t dim, r.Read<uint64_t>("a tensor dimension"));
      if (MulOverflows(info.n_elements, dim, &info.n_elements) ||
          info.n_elements > (uint64_t{1} << 62)) {
        return r.Error(dim_at, "tensor \"" + info.name + "\" has too many elements");
      }
      info.dims.push_back(dim);
    }
    uint64_t type_at = r.offset();
    KILN_ASSIGN_OR_RETURN(uint32_t type, r.Read<uint32_t>("a tensor type"));
    info.type = static_cast<TensorType>(type);
    BlockLayout layout = BlockLayoutOf(info.type);
    if (layout.elements == 0) {
      return r.Error(type_at, "expected a ggml tensor type for \"" + info.name + "\", got " +
                                  std::to_string(type));
    }
    uint64_t row = info.dims.empty() ? 1 : info.dims[0];
    if (row % layout.elements != 0) {
      return r.Error(dims_at, "tensor \"" + info.name + "\" has rows of " + std::to_string(row) +
                                  " elements, not a multiple of the " +
                                  std::to_string(layout.elements) + "-element " +
                                  TensorTypeName(info.type) + " block");
    }
    info.n_bytes = info.n_elements / layout.elements * layout.bytes;
    uint64_t offset_at = r.offset();
    KILN_ASSIGN_OR_RETURN(info.offset, r.Read<uint64_t>("a tensor data offset"));
    if (info.offset % g.alignment_ != 0) {
      return r.Error(offset_at, "tensor \"" + info.name + "\" data offset " +
                                    std::to_string(info.offset) + " is not a multiple of the " +
                                    std::to_string(g.alignment_) + "-byte alignment");
    }
    offset_positions.push_back(offset_at);
    g.tensors_.push_back(std::move(info));
  }

  uint64_t end_of_infos = r.offset();
  g.data_offset_ = (end_of_infos + g.alignment_ - 1) / g.alignment_ * g.alignment_;
  for (size_t t = 0; t < g.tensors_.size(); ++t) {
    const TensorInfo& info = g.tensors_[t];
    uint64_t avail = bytes.size() > g.data_offset_ ? bytes.size() - g.data_offset_ : 0;
    if (info.offset > avail || info.n_bytes > avail - info.offset) {
      return r.Error(offset_positions[t],
                     "tensor \"" + info.name + "\" needs bytes " +
                         std::to_string(g.data_offset_ + info.offset) + ".." +
                         std::to_string(g.data_offset_ + info.offset + info.n_bytes) +
                         ", but the file has " + std::to_string(bytes.size()));
    }
    g.tensor_index_.emplace(info.name, t);
  }
  return g;
}

const Value* GgufFile::Find(std::string_view key) const {
  for (const MetadataEntry& e : metadata_) {
    if (e.key == key) return &e.value;
  }
  return nullptr;
}

const TensorInfo* GgufFile::FindTensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {

bool IsUnsigned(ValueType t) {
  return t == ValueType::kUint8 || t == ValueType::kUint16 || t == ValueType::kUint32 ||
         t == ValueType::kUint64;
}

std::optional<int64_t> AsInt(const Value& v) {
  if (!v.is_integer()) return std::nullopt;
  if (!IsUnsigned(v.type)) return v.i;
  if (v.u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
  return static_cast<int64_t>(v.u);
}

std::optional<uint64_t> AsUint(const Value& v) {
  if (!v.is_integer()) return std::nullopt;
  if (IsUnsigned(v.type)) return v.u;
  if (v.i < 0) return std::nullopt;
  return static_cast<uint64_t>(v.i);
}

}  // namespace

std::optional<std::string> GgufFile::GetString(std::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr || v->type != ValueType::kString) return std::nullopt;
  return v->s;
}

std::optional<uint64_t> GgufFile::GetUint(std::string_view key) const {
  const Value* v = Find(key);
  return v == nullptr ? std::nullopt : AsUint(*v);
}

std::optional<int64_t> GgufFile::GetInt(std::string_view key) const {
  const Value* v = Find(key);
  return v == nullptr ? std::nullopt : AsInt(*v);
}

std::optional<double> GgufFile::GetFloat(std::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr || !v->is_float()) return std::nullopt;
  return v->f;
}

std::optional<bool> GgufFile::GetBool(std::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr || v->type != ValueType::kBool) return std::nullopt;
  return v->u != 0;
}

std::optional<std::vector<std::string>> GgufFile::GetStringArray(std::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr || v->type != ValueType::kArray || v->array_type != ValueType::kString) {
    return std::nullopt;
  }
  std::vector<std::string> out;
  out.reserve(v->array.size());
  for (const Value& e : v->array) out.push_back(e.s);
  return out;
}

std::optional<std::vector<float>> GgufFile::GetFloatArray(std::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr || v->type != ValueType::kArray ||
      (v->array_type != ValueType::kFloat32 && v->array_type != ValueType::kFloat64)) {
    return std::nullopt;
  }
  std::vector<float> out;
  out.reserve(v->array.size());
  for (const Value& e : v->array) out.push_back(static_cast<float>(e.f));
  return out;
}

std::optional<std::vector<int64_t>> GgufFile::GetIntArray(std::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr || v->type != ValueType::kArray) return std::nullopt;
  std::vector<int64_t> out;
  out.reserve(v->array.size());
  for (const Value& e : v->array) {
    std::optional<int64_t> i = AsInt(e);
    if (!i) return std::nullopt;
    out.push_back(*i);
  }
  return out;
}

std::span<const uint8_t> GgufFile::TensorData(const TensorInfo& tensor) const {
  return bytes_.subspan(data_offset_ + tensor.offset, tensor.n_bytes);
}

}  // namespace kiln::gguf
