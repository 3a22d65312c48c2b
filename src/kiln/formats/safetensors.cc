#include "kiln/formats/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "kiln/base/half.h"

namespace kiln::safetensors {
namespace {

// The reference implementation refuses larger headers; so do we, before parsing anything.
constexpr uint64_t kMaxHeaderSize = 100'000'000;

struct DtypeInfo {
  Dtype dtype;
  const char* name;
  size_t size;
};

constexpr DtypeInfo kDtypes[] = {
    {Dtype::kBool, "BOOL", 1},       {Dtype::kU8, "U8", 1},           {Dtype::kI8, "I8", 1},
    {Dtype::kF8_E5M2, "F8_E5M2", 1}, {Dtype::kF8_E4M3, "F8_E4M3", 1}, {Dtype::kI16, "I16", 2},
    {Dtype::kU16, "U16", 2},         {Dtype::kF16, "F16", 2},         {Dtype::kBF16, "BF16", 2},
    {Dtype::kI32, "I32", 4},         {Dtype::kU32, "U32", 4},         {Dtype::kF32, "F32", 4},
    {Dtype::kF64, "F64", 8},         {Dtype::kI64, "I64", 8},         {Dtype::kU64, "U64", 8},
};

Status HeaderError(const std::string& name, uint64_t offset, const std::string& what) {
  return Status::InvalidArgument(name + ": offset " + std::to_string(offset) + ": " + what);
}

}  // namespace

const char* DtypeName(Dtype dtype) { return kDtypes[static_cast<int>(dtype)].name; }

size_t DtypeSize(Dtype dtype) { return kDtypes[static_cast<int>(dtype)].size; }

std::optional<Dtype> ParseDtype(std::string_view name) {
  for (const DtypeInfo& d : kDtypes) {
    if (name == d.name) return d.dtype;
  }
  return std::nullopt;
}

Status ToF32(const TensorView& tensor, float* out) {
  const uint8_t* p = tensor.data.data();
  switch (tensor.dtype) {
    case Dtype::kF32:
      if (tensor.n_elements > 0) std::memcpy(out, p, tensor.n_elements * 4);  // p may be null
      return Status::Ok();
    case Dtype::kF16:
    case Dtype::kBF16:
      for (uint64_t i = 0; i < tensor.n_elements; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = tensor.dtype == Dtype::kF16 ? Fp16ToFloat(h) : Bf16ToFloat(h);
      }
      return Status::Ok();
    default:
      return Status::Unsupported("tensor \"" + tensor.name + "\" has dtype " +
                                 DtypeName(tensor.dtype) + "; expected F32, F16 or BF16");
  }
}

Result<SafetensorsFile> SafetensorsFile::Open(const std::string& path) {
  KILN_ASSIGN_OR_RETURN(MappedFile mapped, MappedFile::Open(path));
  auto file = std::make_shared<MappedFile>(std::move(mapped));
  KILN_ASSIGN_OR_RETURN(SafetensorsFile st, Parse(file->bytes(), path));
  st.file_ = std::move(file);
  return st;
}

Result<SafetensorsFile> SafetensorsFile::Parse(std::span<const uint8_t> bytes, std::string name) {
  SafetensorsFile st;
  st.name_ = std::move(name);
  const std::string& n = st.name_;
  if (bytes.size() < 8) {
    return HeaderError(n, 0,
                       "expected an 8-byte header length, but the file has " +
                           std::to_string(bytes.size()) + " bytes");
  }
  uint64_t header_size;
  std::memcpy(&header_size, bytes.data(), 8);
  if (header_size > kMaxHeaderSize || header_size > bytes.size() - 8) {
    return HeaderError(n, 0,
                       "header length " + std::to_string(header_size) + " exceeds the file (" +
                           std::to_string(bytes.size()) + " bytes) or the 100 MB limit");
  }
  std::string_view text(reinterpret_cast<const char*>(bytes.data() + 8), header_size);
  if (text.empty() || text[0] != '{') {
    return HeaderError(n, 8, "expected the JSON header to start with '{'");
  }
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    return HeaderError(n, 8 + e.byte, std::string("header is not valid JSON: ") + e.what());
  } catch (const nlohmann::json::exception& e) {  // e.g. a number too large for a double
    return HeaderError(n, 8, std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) return HeaderError(n, 8, "expected the header to be a JSON object");

  const uint64_t data_start = 8 + header_size;
  const uint64_t data_size = bytes.size() - data_start;
  struct Range {
    uint64_t begin, end;
    size_t index;
  };
  std::vector<Range> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& key = it.key();
    const nlohmann::json& entry = it.value();
    if (key == "__metadata__") {
      if (!entry.is_object()) return HeaderError(n, 8, "expected __metadata__ to be an object");
      for (auto m = entry.begin(); m != entry.end(); ++m) {
        if (!m.value().is_string()) {
          return HeaderError(n, 8,
                             "expected __metadata__ value \"" + m.key() + "\" to be a string");
        }
        st.metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor \"" + key + "\": ";
    if (!entry.is_object()) return HeaderError(n, 8, where + "expected an object");
    auto dtype_it = entry.find("dtype");
    auto shape_it = entry.find("shape");
    auto offsets_it = entry.find("data_offsets");
    if (dtype_it == entry.end() || !dtype_it->is_string()) {
      return HeaderError(n, 8, where + "expected a string \"dtype\"");
    }
    std::optional<Dtype> dtype = ParseDtype(dtype_it->get<std::string>());
    if (!dtype) {
      return HeaderError(n, 8, where + "unknown dtype \"" + dtype_it->get<std::string>() + "\"");
    }
    if (shape_it == entry.end() || !shape_it->is_array()) {
      return HeaderError(n, 8, where + "expected an array \"shape\"");
    }
    TensorView view;
    view.name = key;
    view.dtype = *dtype;
    view.n_elements = 1;
    for (const nlohmann::json& dim : *shape_it) {
      if (!dim.is_number_unsigned()) {
        return HeaderError(n, 8, where + "expected non-negative integer dimensions");
      }
      uint64_t d = dim.get<uint64_t>();
      if (__builtin_mul_overflow(view.n_elements, d, &view.n_elements) ||
          d > static_cast<uint64_t>(INT64_MAX)) {
        return HeaderError(n, 8, where + "shape overflows");
      }
      view.shape.push_back(static_cast<int64_t>(d));
    }
    if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2 ||
        !(*offsets_it)[0].is_number_unsigned() || !(*offsets_it)[1].is_number_unsigned()) {
      return HeaderError(n, 8, where + "expected \"data_offsets\": [begin, end]");
    }
    uint64_t begin = (*offsets_it)[0].get<uint64_t>();
    uint64_t end = (*offsets_it)[1].get<uint64_t>();
    uint64_t expected_bytes;
    if (__builtin_mul_overflow(view.n_elements, DtypeSize(view.dtype), &expected_bytes)) {
      return HeaderError(n, 8, where + "shape overflows");
    }
    if (begin > end || end > data_size) {
      return HeaderError(n, data_start + std::min(begin, data_size),
                         where + "data_offsets [" + std::to_string(begin) + ", " +
                             std::to_string(end) + "] outside the " + std::to_string(data_size) +
                             "-byte data section");
    }
    if (end - begin != expected_bytes) {
      return HeaderError(n, data_start + begin,
                         where + "expected " + std::to_string(expected_bytes) + " bytes for " +
                             DtypeName(view.dtype) + " of this shape, data_offsets span " +
                             std::to_string(end - begin));
    }
    view.data = bytes.subspan(data_start + begin, end - begin);
    ranges.push_back({begin, end, st.tensors_.size()});
    st.tensors_.push_back(std::move(view));
  }
  // Tensors must tile the data section with no gap or overlap.
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expected_begin = 0;
  for (const Range& r : ranges) {
    if (r.begin != expected_begin) {
      return HeaderError(n, data_start + std::min(r.begin, expected_begin),
                         "tensor \"" + st.tensors_[r.index].name + "\" begins at data offset " +
                             std::to_string(r.begin) + ", expected " +
                             std::to_string(expected_begin) +
                             " (tensors must not overlap or "
                             "leave gaps)");
    }
    expected_begin = r.end;
  }
  if (expected_begin != data_size) {
    return HeaderError(n, data_start + expected_begin,
                       "expected the data section to end at the last tensor, but " +
                           std::to_string(data_size - expected_begin) + " bytes follow");
  }
  // File order, which is also what tensors() promises.
  std::vector<TensorView> ordered;
  ordered.reserve(ranges.size());
  for (const Range& r : ranges) ordered.push_back(std::move(st.tensors_[r.index]));
  st.tensors_ = std::move(ordered);
  for (size_t i = 0; i < st.tensors_.size(); ++i) st.index_.emplace(st.tensors_[i].name, i);
  return st;
}

const TensorView* SafetensorsFile::Find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

Result<SafetensorsModel> SafetensorsModel::OpenFolder(const std::string& dir) {
  namespace fs = std::filesystem;
  SafetensorsModel model;
  fs::path index_path = fs::path(dir) / "model.safetensors.index.json";
  std::error_code ec;
  if (!fs::exists(index_path, ec)) {
    fs::path single = fs::path(dir) / "model.safetensors";
    KILN_ASSIGN_OR_RETURN(SafetensorsFile f, SafetensorsFile::Open(single.string()));
    model.files_.push_back(std::move(f));
  } else {
    KILN_ASSIGN_OR_RETURN(std::string text, ReadFileToString(index_path.string()));
    nlohmann::json index = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (index.is_discarded() || !index.is_object() || !index.contains("weight_map") ||
        !index["weight_map"].is_object()) {
      return Status::InvalidArgument(index_path.string() +
                                     ": expected a JSON object with a \"weight_map\" object");
    }
    std::map<std::string, std::string> weight_map;
    std::set<std::string> shards;
    for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
      if (!it.value().is_string()) {
        return Status::InvalidArgument(index_path.string() + ": weight_map[\"" + it.key() +
                                       "\"]: expected a file name");
      }
      std::string shard = it.value().get<std::string>();
      if (shard.empty() || shard.find('/') != std::string::npos || shard == "..") {
        return Status::InvalidArgument(index_path.string() + ": weight_map[\"" + it.key() +
                                       "\"]: expected a file name in the folder, got \"" + shard +
                                       "\"");
      }
      weight_map[it.key()] = shard;
      shards.insert(shard);
    }
    // Files first, then the index: TensorView pointers stay valid once files_ stops growing.
    model.files_.reserve(shards.size());
    std::map<std::string, size_t> shard_index;
    for (const std::string& shard : shards) {
      KILN_ASSIGN_OR_RETURN(SafetensorsFile f,
                            SafetensorsFile::Open((fs::path(dir) / shard).string()));
      shard_index[shard] = model.files_.size();
      model.files_.push_back(std::move(f));
    }
    for (const auto& [tensor, shard] : weight_map) {
      const SafetensorsFile& f = model.files_[shard_index[shard]];
      const TensorView* view = f.Find(tensor);
      if (view == nullptr) {
        return Status::InvalidArgument(index_path.string() + ": \"" + tensor + "\" is mapped to " +
                                       shard + ", which lacks it");
      }
      model.index_.emplace(tensor, view);
    }
    return model;
  }
  for (const SafetensorsFile& f : model.files_) {
    for (const TensorView& t : f.tensors()) model.index_.emplace(t.name, &t);
  }
  return model;
}

const TensorView* SafetensorsModel::Find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

std::vector<std::string> SafetensorsModel::TensorNames() const {
  std::vector<std::string> names;
  names.reserve(index_.size());
  for (const auto& [name, view] : index_) names.push_back(name);
  return names;
}

void SortForLayout(std::vector<TensorSpec>& specs) {
  std::stable_sort(specs.begin(), specs.end(), [](const TensorSpec& a, const TensorSpec& b) {
    if (a.dtype != b.dtype) return static_cast<int>(a.dtype) > static_cast<int>(b.dtype);
    return a.name < b.name;
  });
}

std::string EncodeHeader(const std::vector<TensorSpec>& ordered,
                         const std::map<std::string, std::string>& metadata) {
  // Written by hand rather than through a JSON object so the key order is the layout order
  // (serde_json's compact form, as the reference writer produces).
  std::string json = "{";
  bool first = true;
  if (!metadata.empty()) {
    json += "\"__metadata__\":" + nlohmann::json(metadata).dump();
    first = false;
  }
  uint64_t offset = 0;
  for (const TensorSpec& s : ordered) {
    uint64_t n = DtypeSize(s.dtype);
    for (int64_t d : s.shape) n *= static_cast<uint64_t>(d);
    if (!first) json += ",";
    first = false;
    json += nlohmann::json(s.name).dump() + ":{\"dtype\":\"" + DtypeName(s.dtype) +
            "\",\"shape\":" + nlohmann::json(s.shape).dump() + ",\"data_offsets\":[" +
            std::to_string(offset) + "," + std::to_string(offset + n) + "]}";
    offset += n;
  }
  json += "}";
  json.append((8 - json.size() % 8) % 8, ' ');
  uint64_t size = json.size();
  std::string out(8, '\0');
  std::memcpy(out.data(), &size, 8);
  return out + json;
}

Result<SafetensorsWriter> SafetensorsWriter::Create(
    const std::string& path, std::vector<TensorSpec> specs,
    const std::map<std::string, std::string>& metadata) {
  std::set<std::string> names;
  for (const TensorSpec& s : specs) {
    if (!names.insert(s.name).second || s.name == "__metadata__") {
      return Status::InvalidArgument(path + ": duplicate or reserved tensor name \"" + s.name +
                                     "\"");
    }
    for (int64_t d : s.shape) {
      if (d < 0) return Status::InvalidArgument(path + ": negative dimension in " + s.name);
    }
  }
  SortForLayout(specs);
  SafetensorsWriter w;
  w.path_ = path;
  w.specs_ = std::move(specs);
  w.file_ = std::fopen(path.c_str(), "wb");
  if (w.file_ == nullptr) {
    return Status::IoError(path + ": cannot open for writing: " + std::strerror(errno));
  }
  std::string header;
  try {
    header = EncodeHeader(w.specs_, metadata);
  } catch (const nlohmann::json::exception& e) {  // a name or value that is not UTF-8
    return Status::InvalidArgument(path + ": cannot encode the header: " + e.what());
  }
  if (std::fwrite(header.data(), 1, header.size(), w.file_) != header.size()) {
    return Status::IoError(path + ": write failed: " + std::strerror(errno));
  }
  return w;
}

SafetensorsWriter::SafetensorsWriter(SafetensorsWriter&& other) noexcept
    : path_(std::move(other.path_)),
      file_(std::exchange(other.file_, nullptr)),
      specs_(std::move(other.specs_)),
      next_(other.next_) {}

SafetensorsWriter& SafetensorsWriter::operator=(SafetensorsWriter&& other) noexcept {
  if (this != &other) {
    if (file_ != nullptr) std::fclose(file_);
    path_ = std::move(other.path_);
    file_ = std::exchange(other.file_, nullptr);
    specs_ = std::move(other.specs_);
    next_ = other.next_;
  }
  return *this;
}

SafetensorsWriter::~SafetensorsWriter() {
  if (file_ != nullptr) std::fclose(file_);
}

Status SafetensorsWriter::Write(std::string_view name, std::span<const uint8_t> bytes) {
  if (file_ == nullptr) return Status::Internal(path_ + ": writer is closed");
  if (next_ >= specs_.size() || specs_[next_].name != name) {
    return Status::Internal(path_ + ": tensor \"" + std::string(name) +
                            "\" written out of order; expected \"" +
                            (next_ < specs_.size() ? specs_[next_].name : "<none>") + "\"");
  }
  const TensorSpec& s = specs_[next_];
  uint64_t n = DtypeSize(s.dtype);
  for (int64_t d : s.shape) n *= static_cast<uint64_t>(d);
  if (bytes.size() != n) {
    return Status::Internal(path_ + ": tensor \"" + s.name + "\" needs " + std::to_string(n) +
                            " bytes, got " + std::to_string(bytes.size()));
  }
  if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), file_) != bytes.size()) {
    return Status::IoError(path_ + ": write failed: " + std::strerror(errno));
  }
  ++next_;
  return Status::Ok();
}

Status SafetensorsWriter::Finish() {
  if (file_ == nullptr) return Status::Internal(path_ + ": writer is closed");
  if (next_ != specs_.size()) {
    return Status::Internal(path_ + ": " + std::to_string(specs_.size() - next_) +
                            " tensors were not written, starting with \"" + specs_[next_].name +
                            "\"");
  }
  int rc = std::fclose(std::exchange(file_, nullptr));
  if (rc != 0) return Status::IoError(path_ + ": close failed: " + std::strerror(errno));
  return Status::Ok();
}

}  // namespace kiln::safetensors
