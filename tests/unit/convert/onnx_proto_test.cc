// Byte-level checks of the protobuf encoder against encodings worked out by hand from the
// protobuf wire-format spec (https://protobuf.dev/programming-guides/encoding/) and onnx.proto's
// field numbers. tests/python/test_convert.py checks whole models against the onnx package.
#include "kiln/formats/onnx_proto.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace kiln::onnx_proto {
namespace {

using namespace std::string_literals;

std::string Bytes(std::initializer_list<int> values) {
  std::string s;
  for (int v : values) s.push_back(static_cast<char>(v));
  return s;
}

TEST(OnnxProtoTest, VarintsMatchTheSpecExamples) {
  std::string out;
  AppendVarint(out, 1);
  EXPECT_EQ(out, Bytes({0x01}));
  out.clear();
  AppendVarint(out, 150);
  EXPECT_EQ(out, Bytes({0x96, 0x01}));
  out.clear();
  AppendVarint(out, 300);
  EXPECT_EQ(out, Bytes({0xac, 0x02}));
  out.clear();
  AppendVarint(out, static_cast<uint64_t>(int64_t{-1}));  // int64 -1 takes ten bytes
  EXPECT_EQ(out, Bytes({0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}));
  out.clear();
  AppendTag(out, 20, 0);  // AttributeProto.type: 20 << 3 = 160 needs two bytes
  EXPECT_EQ(out, Bytes({0xa0, 0x01}));
}

TEST(OnnxProtoTest, EveryAttributeType) {
  EXPECT_EQ(EncodeAttribute(AttributeProto::Float("alpha", 1.0f)),
            "\x0a\x05"
            "alpha" +
                Bytes({0x15, 0x00, 0x00, 0x80, 0x3f, 0xa0, 0x01, 0x01}));
  EXPECT_EQ(EncodeAttribute(AttributeProto::Int("axis", -1)),
            "\x0a\x04"
            "axis" +
                Bytes({0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0xa0, 0x01,
                       0x02}));
  EXPECT_EQ(EncodeAttribute(AttributeProto::String("mode", "ab")),
            "\x0a\x04"
            "mode"
            "\x22\x02"
            "ab" +
                Bytes({0xa0, 0x01, 0x03}));
  EXPECT_EQ(EncodeAttribute(AttributeProto::Floats("f", {0.5f})),
            "\x0a\x01"
            "f" +
                Bytes({0x3d, 0x00, 0x00, 0x00, 0x3f, 0xa0, 0x01, 0x06}));
  EXPECT_EQ(EncodeAttribute(AttributeProto::Ints("perm", {1, 0})),
            "\x0a\x04"
            "perm" +
                Bytes({0x40, 0x01, 0x40, 0x00, 0xa0, 0x01, 0x07}));
  EXPECT_EQ(EncodeAttribute(AttributeProto::Strings("s", {"x", "yz"})),
            "\x0a\x01"
            "s"
            "\x4a\x01"
            "x"
            "\x4a\x02"
            "yz" +
                Bytes({0xa0, 0x01, 0x08}));
  // A tensor: dims (1), data_type (2), name (8), raw_data (9).
  std::string tensor = Bytes({0x08, 0x01, 0x10, 0x07}) +
                       "\x42\x01"
                       "c" +
                       Bytes({0x4a, 0x08, 0x07, 0, 0, 0, 0, 0, 0, 0});
  ASSERT_EQ(tensor.size(), 17u);
  EXPECT_EQ(EncodeAttribute(AttributeProto::Tensor("value", TensorProto::Int64s("c", {1}, {7}))),
            "\x0a\x05"
            "value"
            "\x2a\x11" +
                tensor + Bytes({0xa0, 0x01, 0x04}));
}

TEST(OnnxProtoTest, ExternalTensorPointsIntoTheDataFile) {
  TensorProto t;
  t.name = "w";
  t.data_type = DataType::kFloat;
  t.dims = {2, 3};
  t.external = ExternalData{"m.data", 64, 24};
  auto entry = [](const std::string& key, const std::string& value) {
    std::string e = "\x0a" + std::string(1, static_cast<char>(key.size())) + key + "\x12" +
                    std::string(1, static_cast<char>(value.size())) + value;
    return "\x6a" + std::string(1, static_cast<char>(e.size())) + e;
  };
  std::string expected = Bytes({0x08, 0x02, 0x08, 0x03, 0x10, 0x01}) +
                         "\x42\x01"
                         "w" +
                         entry("location", "m.data") + entry("offset", "64") +
                         entry("length", "24") + Bytes({0x70, 0x01});
  EXPECT_EQ(EncodeTensor(t), expected);
}

TEST(OnnxProtoTest, NodeSkipsEmptyDomainAndKeepsOmittedInputs) {
  NodeProto n;
  n.inputs = {"a", ""};
  n.outputs = {"y"};
  n.name = "n";
  n.op_type = "Op";
  EXPECT_EQ(EncodeNode(n),
            "\x0a\x01"
            "a"
            "\x0a\x00"
            "\x12\x01"
            "y"
            "\x1a\x01"
            "n"
            "\x22\x02"
            "Op"s);
  n.domain = "com.microsoft";
  EXPECT_EQ(EncodeNode(n).substr(EncodeNode(n).size() - 15),
            "\x3a\x0d"
            "com.microsoft");
}

TEST(OnnxProtoTest, ValueInfoWithFixedAndSymbolicDims) {
  ValueInfoProto v{"x", DataType::kInt64, std::vector<Dim>{Dim::Symbolic("b"), Dim::Fixed(4)}};
  // TypeProto{tensor_type{elem_type 7, shape{dim{dim_param "b"}, dim{dim_value 4}}}}
  std::string shape =
      "\x0a\x03"
      "\x12\x01"
      "b"
      "\x0a\x02"
      "\x08\x04";
  std::string tensor_type =
      "\x08\x07"
      "\x12" +
      std::string(1, static_cast<char>(shape.size())) + shape;
  std::string type = "\x0a" + std::string(1, static_cast<char>(tensor_type.size())) + tensor_type;
  EXPECT_EQ(EncodeValueInfo(v),
            "\x0a\x01"
            "x"
            "\x12" +
                std::string(1, static_cast<char>(type.size())) + type);
}

TEST(OnnxProtoTest, ModelFieldsInFieldNumberOrder) {
  ModelProto m;
  m.ir_version = 10;
  m.producer_name = "p";
  m.opset_imports = {{"", 22}};
  std::string bytes = EncodeModel(m);
  // ir_version (1), producer_name (2), graph (7, holding only its empty name), opset_import (8).
  EXPECT_EQ(bytes, Bytes({0x08, 0x0a}) +
                       "\x12\x01"
                       "p"
                       "\x3a\x02"
                       "\x12\x00"
                       "\x42\x04"s +
                       Bytes({0x0a, 0x00, 0x10, 0x16}));
}

}  // namespace
}  // namespace kiln::onnx_proto
