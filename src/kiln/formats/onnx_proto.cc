#include "kiln/formats/onnx_proto.h"

#include <cstring>

namespace kiln::onnx_proto {
namespace {

constexpr uint32_t kVarint = 0;
constexpr uint32_t kLengthDelimited = 2;
constexpr uint32_t kFixed32 = 5;

void AppendInt(std::string& out, uint32_t field, int64_t value) {
  AppendTag(out, field, kVarint);
  // Negative values are sign-extended to 64 bits (10 bytes), as protobuf does for int32/int64.
  AppendVarint(out, static_cast<uint64_t>(value));
}

void AppendBytes(std::string& out, uint32_t field, std::string_view bytes) {
  AppendTag(out, field, kLengthDelimited);
  AppendVarint(out, bytes.size());
  out.append(bytes.data(), bytes.size());
}

void AppendFloat(std::string& out, uint32_t field, float value) {
  AppendTag(out, field, kFixed32);
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((bits >> (8 * i)) & 0xffu));
}

std::string EncodeStringEntry(std::string_view key, std::string_view value) {
  std::string out;
  AppendBytes(out, 1, key);
  AppendBytes(out, 2, value);
  return out;
}

std::string EncodeDim(const Dim& dim) {
  std::string out;
  if (dim.value) {
    AppendInt(out, 1, *dim.value);
  } else {
    AppendBytes(out, 2, dim.param);
  }
  return out;
}

std::string EncodeTypeProto(const ValueInfoProto& v) {
  std::string tensor_type;
  AppendInt(tensor_type, 1, static_cast<int32_t>(v.elem_type));
  if (v.shape) {
    std::string shape;
    for (const Dim& d : *v.shape) AppendBytes(shape, 1, EncodeDim(d));
    AppendBytes(tensor_type, 2, shape);
  }
  std::string out;
  AppendBytes(out, 1, tensor_type);
  return out;
}

std::string EncodeOpsetId(const OperatorSetId& id) {
  std::string out;
  AppendBytes(out, 1, id.domain);
  AppendInt(out, 2, id.version);
  return out;
}

}  // namespace

size_t DataTypeSize(DataType type) {
  switch (type) {
    case DataType::kFloat:
    case DataType::kInt32:
    case DataType::kUint32:
      return 4;
    case DataType::kUint8:
    case DataType::kInt8:
    case DataType::kBool:
      return 1;
    case DataType::kUint16:
    case DataType::kInt16:
    case DataType::kFloat16:
    case DataType::kBFloat16:
      return 2;
    case DataType::kInt64:
    case DataType::kDouble:
    case DataType::kUint64:
      return 8;
    case DataType::kString:
    case DataType::kUndefined:
      return 0;
  }
  return 0;
}

void AppendVarint(std::string& out, uint64_t value) {
  while (value >= 0x80) {
    out.push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
}

void AppendTag(std::string& out, uint32_t field_number, uint32_t wire_type) {
  AppendVarint(out, (static_cast<uint64_t>(field_number) << 3) | wire_type);
}

TensorProto TensorProto::Raw(std::string name, DataType type, std::vector<int64_t> dims,
                             std::string_view bytes) {
  TensorProto t;
  t.name = std::move(name);
  t.data_type = type;
  t.dims = std::move(dims);
  t.raw_data.assign(bytes.data(), bytes.size());
  return t;
}

TensorProto TensorProto::Int64s(std::string name, std::vector<int64_t> dims,
                                const std::vector<int64_t>& values) {
  std::string bytes(values.size() * 8, '\0');
  // Little-endian hosts only (x86-64, aarch64), like every other binary format Kiln reads.
  if (!values.empty()) std::memcpy(bytes.data(), values.data(), bytes.size());
  return Raw(std::move(name), DataType::kInt64, std::move(dims), bytes);
}

AttributeProto AttributeProto::Float(std::string name, float v) {
  AttributeProto a;
  a.name = std::move(name);
  a.type = AttributeType::kFloat;
  a.f = v;
  return a;
}

AttributeProto AttributeProto::Int(std::string name, int64_t v) {
  AttributeProto a;
  a.name = std::move(name);
  a.type = AttributeType::kInt;
  a.i = v;
  return a;
}

AttributeProto AttributeProto::String(std::string name, std::string v) {
  AttributeProto a;
  a.name = std::move(name);
  a.type = AttributeType::kString;
  a.s = std::move(v);
  return a;
}

AttributeProto AttributeProto::Tensor(std::string name, TensorProto v) {
  AttributeProto a;
  a.name = std::move(name);
  a.type = AttributeType::kTensor;
  a.t = std::move(v);
  return a;
}

AttributeProto AttributeProto::Floats(std::string name, std::vector<float> v) {
  AttributeProto a;
  a.name = std::move(name);
  a.type = AttributeType::kFloats;
  a.floats = std::move(v);
  return a;
}

AttributeProto AttributeProto::Ints(std::string name, std::vector<int64_t> v) {
  AttributeProto a;
  a.name = std::move(name);
  a.type = AttributeType::kInts;
  a.ints = std::move(v);
  return a;
}

AttributeProto AttributeProto::Strings(std::string name, std::vector<std::string> v) {
  AttributeProto a;
  a.name = std::move(name);
  a.type = AttributeType::kStrings;
  a.strings = std::move(v);
  return a;
}

std::string EncodeTensor(const TensorProto& t) {
  std::string out;
  for (int64_t d : t.dims) AppendInt(out, 1, d);
  AppendInt(out, 2, static_cast<int32_t>(t.data_type));
  AppendBytes(out, 8, t.name);
  if (!t.external) {
    AppendBytes(out, 9, t.raw_data);
  } else {
    AppendBytes(out, 13, EncodeStringEntry("location", t.external->location));
    AppendBytes(out, 13, EncodeStringEntry("offset", std::to_string(t.external->offset)));
    AppendBytes(out, 13, EncodeStringEntry("length", std::to_string(t.external->length)));
    AppendInt(out, 14, 1);  // DataLocation.EXTERNAL
  }
  return out;
}

std::string EncodeAttribute(const AttributeProto& a) {
  std::string out;
  AppendBytes(out, 1, a.name);
  switch (a.type) {
    case AttributeType::kFloat:
      AppendFloat(out, 2, a.f);
      break;
    case AttributeType::kInt:
      AppendInt(out, 3, a.i);
      break;
    case AttributeType::kString:
      AppendBytes(out, 4, a.s);
      break;
    case AttributeType::kTensor:
      AppendBytes(out, 5, a.t ? EncodeTensor(*a.t) : std::string());
      break;
    case AttributeType::kFloats:
      for (float f : a.floats) AppendFloat(out, 7, f);
      break;
    case AttributeType::kInts:
      for (int64_t i : a.ints) AppendInt(out, 8, i);
      break;
    case AttributeType::kStrings:
      for (const std::string& s : a.strings) AppendBytes(out, 9, s);
      break;
  }
  AppendInt(out, 20, static_cast<int32_t>(a.type));
  return out;
}

std::string EncodeNode(const NodeProto& n) {
  std::string out;
  for (const std::string& in : n.inputs) AppendBytes(out, 1, in);
  for (const std::string& o : n.outputs) AppendBytes(out, 2, o);
  if (!n.name.empty()) AppendBytes(out, 3, n.name);
  AppendBytes(out, 4, n.op_type);
  for (const AttributeProto& a : n.attributes) AppendBytes(out, 5, EncodeAttribute(a));
  if (!n.domain.empty()) AppendBytes(out, 7, n.domain);
  return out;
}

std::string EncodeValueInfo(const ValueInfoProto& v) {
  std::string out;
  AppendBytes(out, 1, v.name);
  AppendBytes(out, 2, EncodeTypeProto(v));
  return out;
}

std::string EncodeGraph(const GraphProto& g) {
  std::string out;
  for (const NodeProto& n : g.nodes) AppendBytes(out, 1, EncodeNode(n));
  AppendBytes(out, 2, g.name);
  for (const TensorProto& t : g.initializers) AppendBytes(out, 5, EncodeTensor(t));
  for (const ValueInfoProto& v : g.inputs) AppendBytes(out, 11, EncodeValueInfo(v));
  for (const ValueInfoProto& v : g.outputs) AppendBytes(out, 12, EncodeValueInfo(v));
  for (const ValueInfoProto& v : g.value_infos) AppendBytes(out, 13, EncodeValueInfo(v));
  return out;
}

std::string EncodeModel(const ModelProto& m) {
  std::string out;
  AppendInt(out, 1, m.ir_version);
  if (!m.producer_name.empty()) AppendBytes(out, 2, m.producer_name);
  if (!m.producer_version.empty()) AppendBytes(out, 3, m.producer_version);
  AppendBytes(out, 7, EncodeGraph(m.graph));
  for (const OperatorSetId& id : m.opset_imports) AppendBytes(out, 8, EncodeOpsetId(id));
  for (const auto& [key, value] : m.metadata_props) {
    AppendBytes(out, 14, EncodeStringEntry(key, value));
  }
  return out;
}

}  // namespace kiln::onnx_proto
