// The part of the ONNX protobuf schema (onnx/onnx.proto, IR version 10) that a model writer
// needs, as plain structs, and an encoder to the protobuf wire format.
//
// Encoding follows proto2 as onnx.proto declares it: fields in field-number order, repeated
// scalars unpacked, only fields that are set. The output is therefore byte-identical to what
// the `onnx` Python package serializes for the same message, which the tests check.
// Tensors either carry their bytes (raw_data) or point into an external data file
// (location/offset/length), which is how weights stay out of the .onnx file.
// Spec: https://github.com/onnx/onnx/blob/main/onnx/onnx.proto
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::onnx_proto {

// TensorProto.DataType.
enum class DataType : int32_t {
  kUndefined = 0,
  kFloat = 1,
  kUint8 = 2,
  kInt8 = 3,
  kUint16 = 4,
  kInt16 = 5,
  kInt32 = 6,
  kInt64 = 7,
  kString = 8,
  kBool = 9,
  kFloat16 = 10,
  kDouble = 11,
  kUint32 = 12,
  kUint64 = 13,
  kBFloat16 = 16,
};

// Bytes per element (0 for kString and kUndefined).
size_t DataTypeSize(DataType type);

struct ExternalData {
  std::string location;  // file name relative to the .onnx file
  uint64_t offset = 0;
  uint64_t length = 0;
};

struct TensorProto {
  std::string name;
  DataType data_type = DataType::kFloat;
  std::vector<int64_t> dims;
  std::string raw_data;                  // little-endian element bytes, when not external
  std::optional<ExternalData> external;  // set: data lives in external.location

  // A tensor whose bytes are given inline.
  static TensorProto Raw(std::string name, DataType type, std::vector<int64_t> dims,
                         std::string_view bytes);
  static TensorProto Int64s(std::string name, std::vector<int64_t> dims,
                            const std::vector<int64_t>& values);
};

// One dimension: a fixed size or a symbolic name.
struct Dim {
  std::optional<int64_t> value;
  std::string param;

  static Dim Fixed(int64_t v) { return Dim{v, {}}; }
  static Dim Symbolic(std::string name) { return Dim{std::nullopt, std::move(name)}; }
};

// ValueInfoProto for a tensor (TypeProto.Tensor with an optional shape).
struct ValueInfoProto {
  std::string name;
  DataType elem_type = DataType::kFloat;
  std::optional<std::vector<Dim>> shape;  // unset: rank unknown
};

// AttributeProto.AttributeType.
enum class AttributeType : int32_t {
  kFloat = 1,
  kInt = 2,
  kString = 3,
  kTensor = 4,
  kFloats = 6,
  kInts = 7,
  kStrings = 8,
};

struct AttributeProto {
  std::string name;
  AttributeType type = AttributeType::kInt;
  float f = 0;
  int64_t i = 0;
  std::string s;
  std::optional<TensorProto> t;
  std::vector<float> floats;
  std::vector<int64_t> ints;
  std::vector<std::string> strings;

  static AttributeProto Float(std::string name, float v);
  static AttributeProto Int(std::string name, int64_t v);
  static AttributeProto String(std::string name, std::string v);
  static AttributeProto Tensor(std::string name, TensorProto v);
  static AttributeProto Floats(std::string name, std::vector<float> v);
  static AttributeProto Ints(std::string name, std::vector<int64_t> v);
  static AttributeProto Strings(std::string name, std::vector<std::string> v);
};

struct NodeProto {
  std::vector<std::string> inputs;   // "" marks an omitted optional input
  std::vector<std::string> outputs;  // "" marks an omitted optional output
  std::string name;
  std::string op_type;
  std::string domain;  // "" is the default ONNX domain
  std::vector<AttributeProto> attributes;
};

struct GraphProto {
  std::vector<NodeProto> nodes;
  std::string name;
  std::vector<TensorProto> initializers;
  std::vector<ValueInfoProto> inputs;
  std::vector<ValueInfoProto> outputs;
  std::vector<ValueInfoProto> value_infos;
};

struct OperatorSetId {
  std::string domain;
  int64_t version = 0;
};

struct ModelProto {
  int64_t ir_version = 10;
  std::string producer_name;
  std::string producer_version;
  GraphProto graph;
  std::vector<OperatorSetId> opset_imports;
  std::vector<std::pair<std::string, std::string>> metadata_props;
};

// Serialized messages (the bytes of an .onnx file for EncodeModel).
std::string EncodeModel(const ModelProto& model);
std::string EncodeGraph(const GraphProto& graph);
std::string EncodeNode(const NodeProto& node);
std::string EncodeAttribute(const AttributeProto& attribute);
std::string EncodeTensor(const TensorProto& tensor);
std::string EncodeValueInfo(const ValueInfoProto& value_info);

// Wire-format primitives, exposed for tests.
void AppendVarint(std::string& out, uint64_t value);
// A field's key: (field_number << 3) | wire_type.
void AppendTag(std::string& out, uint32_t field_number, uint32_t wire_type);

}  // namespace kiln::onnx_proto
