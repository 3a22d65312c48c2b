// The GGUF reader on files built byte by byte here: every metadata type, nested arrays, tensor
// infos and data, alignment, and corrupt input.
#include "kiln/formats/gguf.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace kiln::gguf {
namespace {

// Appends little-endian GGUF encodings.
class Builder {
 public:
  template <typename T>
  Builder& Raw(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    bytes.insert(bytes.end(), p, p + sizeof(T));
    return *this;
  }
  Builder& Str(const std::string& s) {
    Raw<uint64_t>(s.size());
    bytes.insert(bytes.end(), s.begin(), s.end());
    return *this;
  }
  Builder& Key(const std::string& key, ValueType type) {
    Str(key);
    return Raw<uint32_t>(static_cast<uint32_t>(type));
  }
  void PadTo(size_t alignment) {
    while (bytes.size() % alignment != 0) bytes.push_back(0);
  }
  std::vector<uint8_t> bytes;
};

struct TestTensor {
  std::string name;
  std::vector<uint64_t> dims;
  TensorType type;
  std::vector<uint8_t> data;
};

// A v3 file with one key of every type (and a nested array), and `tensors`.
std::vector<uint8_t> BuildFile(const std::vector<TestTensor>& tensors, uint32_t alignment = 32,
                               uint32_t version = 3) {
  Builder b;
  b.Raw<uint32_t>(0x46554747).Raw<uint32_t>(version);
  b.Raw<uint64_t>(tensors.size()).Raw<uint64_t>(17);
  b.Key("u8", ValueType::kUint8).Raw<uint8_t>(200);
  b.Key("i8", ValueType::kInt8).Raw<int8_t>(-100);
  b.Key("u16", ValueType::kUint16).Raw<uint16_t>(60000);
  b.Key("i16", ValueType::kInt16).Raw<int16_t>(-30000);
  b.Key("u32", ValueType::kUint32).Raw<uint32_t>(4000000000u);
  b.Key("i32", ValueType::kInt32).Raw<int32_t>(-2000000000);
  b.Key("f32", ValueType::kFloat32).Raw<float>(1.5f);
  b.Key("bool", ValueType::kBool).Raw<uint8_t>(1);
  b.Key("str", ValueType::kString).Str("h\xc3\xa9llo");
  b.Key("u64", ValueType::kUint64).Raw<uint64_t>(18000000000000000000ull);
  b.Key("i64", ValueType::kInt64).Raw<int64_t>(-9000000000000000000ll);
  b.Key("f64", ValueType::kFloat64).Raw<double>(-0.125);
  b.Key("general.alignment", ValueType::kUint32).Raw<uint32_t>(alignment);
  b.Key("strs", ValueType::kArray).Raw<uint32_t>(8).Raw<uint64_t>(3).Str("a").Str("").Str("ccc");
  b.Key("floats", ValueType::kArray)
      .Raw<uint32_t>(6)
      .Raw<uint64_t>(2)
      .Raw<float>(0.5f)
      .Raw<float>(-2.f);
  b.Key("ints", ValueType::kArray)
      .Raw<uint32_t>(5)
      .Raw<uint64_t>(2)
      .Raw<int32_t>(-1)
      .Raw<int32_t>(7);
  // [[1, 2], []] of uint16
  b.Key("nested", ValueType::kArray).Raw<uint32_t>(9).Raw<uint64_t>(2);
  b.Raw<uint32_t>(2).Raw<uint64_t>(2).Raw<uint16_t>(1).Raw<uint16_t>(2);
  b.Raw<uint32_t>(2).Raw<uint64_t>(0);
  uint64_t offset = 0;
  std::vector<uint64_t> offsets;
  for (const TestTensor& t : tensors) {
    b.Str(t.name).Raw<uint32_t>(t.dims.size());
    for (uint64_t d : t.dims) b.Raw<uint64_t>(d);
    b.Raw<uint32_t>(static_cast<uint32_t>(t.type)).Raw<uint64_t>(offset);
    offsets.push_back(offset);
    offset += (t.data.size() + alignment - 1) / alignment * alignment;
  }
  b.PadTo(alignment);
  for (size_t i = 0; i < tensors.size(); ++i) {
    b.bytes.insert(b.bytes.end(), tensors[i].data.begin(), tensors[i].data.end());
    if (i + 1 < tensors.size()) b.PadTo(alignment);
  }
  return b.bytes;
}

std::vector<uint8_t> FloatBytes(const std::vector<float>& v) {
  std::vector<uint8_t> out(v.size() * 4);
  std::memcpy(out.data(), v.data(), out.size());
  return out;
}

std::vector<TestTensor> SampleTensors() {
  std::vector<TestTensor> t;
  t.push_back({"f32", {3, 2}, TensorType::kF32, FloatBytes({1, 2, 3, -4, 5.5f, 0})});
  // F16: 1.0 (0x3c00), -2.0 (0xc000)
  t.push_back({"f16", {2}, TensorType::kF16, {0x00, 0x3c, 0x00, 0xc0}});
  // Q8_0: d = 0.5 (f16 0x3800), qs = -16..15
  std::vector<uint8_t> q8 = {0x00, 0x38};
  for (int i = -16; i < 16; ++i) q8.push_back(static_cast<uint8_t>(static_cast<int8_t>(i)));
  t.push_back({"q8", {32}, TensorType::kQ8_0, q8});
  return t;
}

const std::string kName = "test.gguf";

TEST(GgufTest, ReadsEveryMetadataType) {
  std::vector<uint8_t> bytes = BuildFile(SampleTensors());
  auto g = GgufFile::Parse(bytes, kName);
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  EXPECT_EQ(g->version(), 3u);
  EXPECT_EQ(g->metadata().size(), 17u);
  EXPECT_EQ(g->GetUint("u8"), 200u);
  EXPECT_EQ(g->GetInt("i8"), -100);
  EXPECT_EQ(g->GetUint("u16"), 60000u);
  EXPECT_EQ(g->GetInt("i16"), -30000);
  EXPECT_EQ(g->GetUint("u32"), 4000000000u);
  EXPECT_EQ(g->GetInt("u32"), 4000000000);  // widening across signedness when it fits
  EXPECT_EQ(g->GetInt("i32"), -2000000000);
  EXPECT_EQ(g->GetUint("i32"), std::nullopt);  // negative does not fit
  EXPECT_EQ(g->GetFloat("f32"), 1.5);
  EXPECT_EQ(g->GetBool("bool"), true);
  EXPECT_EQ(g->GetString("str"), "h\xc3\xa9llo");
  EXPECT_EQ(g->GetUint("u64"), 18000000000000000000ull);
  EXPECT_EQ(g->GetInt("u64"), std::nullopt);  // too large for int64
  EXPECT_EQ(g->GetInt("i64"), -9000000000000000000ll);
  EXPECT_EQ(g->GetFloat("f64"), -0.125);
  EXPECT_EQ(g->GetString("u8"), std::nullopt);  // wrong type
  EXPECT_EQ(g->GetUint("missing"), std::nullopt);
  EXPECT_EQ(g->GetStringArray("strs"), (std::vector<std::string>{"a", "", "ccc"}));
  EXPECT_EQ(g->GetFloatArray("floats"), (std::vector<float>{0.5f, -2.f}));
  EXPECT_EQ(g->GetIntArray("ints"), (std::vector<int64_t>{-1, 7}));
  const Value* nested = g->Find("nested");
  ASSERT_NE(nested, nullptr);
  EXPECT_EQ(nested->type, ValueType::kArray);
  EXPECT_EQ(nested->array_type, ValueType::kArray);
  ASSERT_EQ(nested->array.size(), 2u);
  EXPECT_EQ(nested->array[0].array_type, ValueType::kUint16);
  ASSERT_EQ(nested->array[0].array.size(), 2u);
  EXPECT_EQ(nested->array[0].array[1].u, 2u);
  EXPECT_TRUE(nested->array[1].array.empty());
  EXPECT_EQ(g->metadata()[0].key, "u8");  // file order is kept
}

TEST(GgufTest, ReadsTensorInfosAndData) {
  std::vector<uint8_t> bytes = BuildFile(SampleTensors());
  auto g = GgufFile::Parse(bytes, kName);
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  ASSERT_EQ(g->tensors().size(), 3u);
  EXPECT_EQ(g->data_offset() % 32, 0u);
  const TensorInfo* f32 = g->FindTensor("f32");
  ASSERT_NE(f32, nullptr);
  EXPECT_EQ(f32->dims, (std::vector<uint64_t>{3, 2}));
  EXPECT_EQ(f32->n_elements, 6u);
  EXPECT_EQ(f32->n_bytes, 24u);
  std::vector<float> out(6);
  ASSERT_TRUE(DequantizeToF32(f32->type, g->TensorData(*f32), 6, out.data()).ok());
  EXPECT_EQ(out, (std::vector<float>{1, 2, 3, -4, 5.5f, 0}));

  const TensorInfo* f16 = g->FindTensor("f16");
  ASSERT_NE(f16, nullptr);
  out.resize(2);
  ASSERT_TRUE(DequantizeToF32(f16->type, g->TensorData(*f16), 2, out.data()).ok());
  EXPECT_EQ(out, (std::vector<float>{1.f, -2.f}));

  const TensorInfo* q8 = g->FindTensor("q8");
  ASSERT_NE(q8, nullptr);
  EXPECT_EQ(q8->n_bytes, 34u);
  out.resize(32);
  ASSERT_TRUE(DequantizeToF32(q8->type, g->TensorData(*q8), 32, out.data()).ok());
  for (int i = 0; i < 32; ++i) EXPECT_EQ(out[i], (i - 16) * 0.5f) << i;
  EXPECT_EQ(g->FindTensor("nope"), nullptr);
}

TEST(GgufTest, HonoursAlignment) {
  std::vector<uint8_t> bytes = BuildFile(SampleTensors(), 64);
  auto g = GgufFile::Parse(bytes, kName);
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  EXPECT_EQ(g->alignment(), 64u);
  EXPECT_EQ(g->data_offset() % 64, 0u);
  EXPECT_EQ(g->FindTensor("f16")->offset, 64u);
}

TEST(GgufTest, ReadsVersion2) {
  std::vector<uint8_t> bytes = BuildFile(SampleTensors(), 32, 2);
  auto g = GgufFile::Parse(bytes, kName);
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  EXPECT_EQ(g->version(), 2u);
}

void ExpectError(std::span<const uint8_t> bytes, const std::string& context) {
  auto g = GgufFile::Parse(bytes, kName);
  ASSERT_FALSE(g.ok()) << context;
  EXPECT_NE(g.status().message().find(kName), std::string::npos) << g.status().message();
  EXPECT_NE(g.status().message().find("offset"), std::string::npos) << g.status().message();
}

TEST(GgufTest, EveryTruncationIsAnError) {
  std::vector<uint8_t> bytes = BuildFile(SampleTensors());
  for (size_t len = 0; len < bytes.size(); ++len) {
    ExpectError(std::span(bytes.data(), len), "truncated to " + std::to_string(len));
  }
}

TEST(GgufTest, RandomCorruptionNeverCrashes) {
  const std::vector<uint8_t> good = BuildFile(SampleTensors());
  std::mt19937 rng(42);
  int failures = 0;
  for (int trial = 0; trial < 20000; ++trial) {
    std::vector<uint8_t> bytes = good;
    int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) bytes[rng() % bytes.size()] = static_cast<uint8_t>(rng());
    auto g = GgufFile::Parse(bytes, kName);
    if (!g.ok()) {
      ++failures;
      EXPECT_NE(g.status().message().find("offset"), std::string::npos) << g.status().message();
      continue;
    }
    for (const TensorInfo& t : g->tensors()) {  // a parsed file's views stay inside it
      std::span<const uint8_t> d = g->TensorData(t);
      EXPECT_GE(d.data(), bytes.data());
      EXPECT_LE(d.data() + d.size(), bytes.data() + bytes.size());
    }
  }
  EXPECT_GT(failures, 1000);  // the corruption does hit the structure
}

TEST(GgufTest, HugeCountsAreRejectedBeforeAllocating) {
  Builder b;
  b.Raw<uint32_t>(0x46554747).Raw<uint32_t>(3).Raw<uint64_t>(0).Raw<uint64_t>(1);
  b.Key("big", ValueType::kArray).Raw<uint32_t>(0).Raw<uint64_t>(1ull << 60);
  ExpectError(b.bytes, "array count");

  Builder s;
  s.Raw<uint32_t>(0x46554747).Raw<uint32_t>(3).Raw<uint64_t>(0).Raw<uint64_t>(1);
  s.Key("s", ValueType::kString).Raw<uint64_t>(~0ull);
  ExpectError(s.bytes, "string length");

  Builder t;
  t.Raw<uint32_t>(0x46554747).Raw<uint32_t>(3).Raw<uint64_t>(1ull << 62).Raw<uint64_t>(0);
  ExpectError(t.bytes, "tensor count");
}

TEST(GgufTest, RejectsBadStructure) {
  std::vector<uint8_t> bytes = BuildFile(SampleTensors());
  std::vector<uint8_t> bad_magic = bytes;
  bad_magic[0] = 'X';
  ExpectError(bad_magic, "magic");
  std::vector<uint8_t> bad_version = bytes;
  bad_version[4] = 9;
  ExpectError(bad_version, "version");

  // Deep nesting is refused instead of recursing without bound.
  Builder deep;
  deep.Raw<uint32_t>(0x46554747).Raw<uint32_t>(3).Raw<uint64_t>(0).Raw<uint64_t>(1);
  deep.Key("deep", ValueType::kArray);
  for (int i = 0; i < 100; ++i) deep.Raw<uint32_t>(9).Raw<uint64_t>(1);
  deep.Raw<uint32_t>(0).Raw<uint64_t>(0);
  ExpectError(deep.bytes, "nesting");

  // Alignment that is not a power of two.
  std::vector<uint8_t> bad_align = BuildFile(SampleTensors(), 48);
  ExpectError(bad_align, "alignment");

  // A tensor whose rows are not whole blocks.
  std::vector<TestTensor> odd = {{"q", {16}, TensorType::kQ8_0, std::vector<uint8_t>(34)}};
  ExpectError(BuildFile(odd), "partial block");

  // Duplicate tensor names.
  std::vector<TestTensor> dup = {{"a", {1}, TensorType::kF32, FloatBytes({1})},
                                 {"a", {1}, TensorType::kF32, FloatBytes({2})}};
  ExpectError(BuildFile(dup), "duplicate");
}

TEST(GgufTest, DequantizeChecksSizes) {
  std::vector<uint8_t> data(33);
  std::vector<float> out(32);
  EXPECT_FALSE(DequantizeToF32(TensorType::kQ8_0, data, 32, out.data()).ok());  // one byte short
  EXPECT_FALSE(DequantizeToF32(TensorType::kQ8_0, data, 16, out.data()).ok());  // partial block
  EXPECT_FALSE(DequantizeToF32(static_cast<TensorType>(99), data, 1, out.data()).ok());
}

// Found by fuzzing: an empty F32 tensor passed null pointers to memcpy.
TEST(GgufTest, DequantizesEmptyTensors) {
  EXPECT_TRUE(DequantizeToF32(TensorType::kF32, {}, 0, nullptr).ok());
  EXPECT_TRUE(DequantizeToF32(TensorType::kQ4_K, {}, 0, nullptr).ok());
}

TEST(GgufTest, Q4_0MatchesTheFormula) {
  // d = 2.0 (f16 0x4000); byte j holds element j (low nibble) and j + 16 (high nibble).
  std::vector<uint8_t> block = {0x00, 0x40};
  for (int j = 0; j < 16; ++j) block.push_back(static_cast<uint8_t>((j & 0xF) | ((15 - j) << 4)));
  std::vector<float> out(32);
  ASSERT_TRUE(DequantizeToF32(TensorType::kQ4_0, block, 32, out.data()).ok());
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(out[j], 2.f * static_cast<float>(j - 8));
    EXPECT_EQ(out[j + 16], 2.f * static_cast<float>(15 - j - 8));
  }
}

TEST(GgufTest, BlockLayouts) {
  EXPECT_EQ(BlockLayoutOf(TensorType::kQ4_K).elements, 256u);
  EXPECT_EQ(BlockLayoutOf(TensorType::kQ4_K).bytes, 144u);
  EXPECT_EQ(BlockLayoutOf(TensorType::kQ6_K).bytes, 210u);
  EXPECT_EQ(BlockLayoutOf(TensorType::kQ5_0).bytes, 22u);
  EXPECT_EQ(BlockLayoutOf(static_cast<TensorType>(5)).elements, 0u);
  EXPECT_STREQ(TensorTypeName(TensorType::kQ5_K), "Q5_K");
}

}  // namespace
}  // namespace kiln::gguf
