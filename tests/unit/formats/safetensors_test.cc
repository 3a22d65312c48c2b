// safetensors: write -> read round trips, the reference header layout, sharded folders and
// corrupt files.
#include "kiln/formats/safetensors.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "kiln/base/half.h"
#include "kiln/base/mapped_file.h"

namespace kiln::safetensors {
namespace {

namespace fs = std::filesystem;

fs::path TempDir(const std::string& name) {
  fs::path dir =
      fs::temp_directory_path() / ("kiln_safetensors_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

template <typename T>
std::span<const uint8_t> AsBytes(const std::vector<T>& v) {
  return {reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(T)};
}

std::vector<uint8_t> ReadAll(const fs::path& p) {
  auto s = ReadFileToString(p.string());
  EXPECT_TRUE(s.ok());
  return std::vector<uint8_t>(s->begin(), s->end());
}

TEST(SafetensorsTest, RoundTripsF32F16Bf16) {
  fs::path dir = TempDir("roundtrip");
  std::string path = (dir / "model.safetensors").string();
  std::vector<float> a = {1.f, -2.5f, 3.25f, 0.f, 1e-3f, 65504.f};
  std::vector<uint16_t> b = {FloatToFp16(0.5f), FloatToFp16(-1.f)};
  std::vector<uint16_t> c = {FloatToBf16(3.f), FloatToBf16(-0.25f), FloatToBf16(7.f)};
  auto w = SafetensorsWriter::Create(
      path,
      {{"zeta", Dtype::kF32, {2, 3}}, {"alpha", Dtype::kF16, {2}}, {"beta", Dtype::kBF16, {3, 1}}},
      {{"format", "pt"}});
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  // The reference layout: widest dtype first, then by name (BF16 sorts after F16 as in Rust).
  ASSERT_EQ(w->order().size(), 3u);
  EXPECT_EQ(w->order()[0].name, "zeta");
  EXPECT_EQ(w->order()[1].name, "beta");
  EXPECT_EQ(w->order()[2].name, "alpha");
  ASSERT_TRUE(w->Write("zeta", AsBytes(a)).ok());
  EXPECT_FALSE(w->Write("alpha", AsBytes(b)).ok());  // out of order
  ASSERT_TRUE(w->Write("beta", AsBytes(c)).ok());
  ASSERT_TRUE(w->Write("alpha", AsBytes(b)).ok());
  ASSERT_TRUE(w->Finish().ok());

  auto f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->metadata().at("format"), "pt");
  ASSERT_EQ(f->tensors().size(), 3u);
  const TensorView* za = f->Find("zeta");
  ASSERT_NE(za, nullptr);
  EXPECT_EQ(za->shape, (std::vector<int64_t>{2, 3}));
  std::span<const float> typed = za->As<float>();
  ASSERT_EQ(typed.size(), 6u);
  EXPECT_TRUE(std::equal(typed.begin(), typed.end(), a.begin()));
  std::vector<float> out(3);
  ASSERT_TRUE(ToF32(*f->Find("beta"), out.data()).ok());
  EXPECT_EQ(out, (std::vector<float>{3.f, -0.25f, 7.f}));
  out.resize(2);
  ASSERT_TRUE(ToF32(*f->Find("alpha"), out.data()).ok());
  EXPECT_EQ(out, (std::vector<float>{0.5f, -1.f}));

  // Header bytes exactly as the reference writer lays them out.
  std::vector<uint8_t> bytes = ReadAll(path);
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  std::string header(bytes.begin() + 8, bytes.begin() + 8 + static_cast<long>(n));
  EXPECT_EQ(header.substr(0, header.find_last_not_of(' ') + 1),
            "{\"__metadata__\":{\"format\":\"pt\"},"
            "\"zeta\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
            "\"beta\":{\"dtype\":\"BF16\",\"shape\":[3,1],\"data_offsets\":[24,30]},"
            "\"alpha\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[30,34]}}");
  fs::remove_all(dir);
}

TEST(SafetensorsTest, FinishRequiresEveryTensor) {
  fs::path dir = TempDir("finish");
  auto w = SafetensorsWriter::Create((dir / "x.safetensors").string(),
                                     {{"a", Dtype::kF32, {1}}, {"b", Dtype::kF32, {1}}});
  ASSERT_TRUE(w.ok());
  std::vector<float> one = {1.f};
  ASSERT_TRUE(w->Write("a", AsBytes(one)).ok());
  EXPECT_FALSE(w->Write("b", AsBytes(std::vector<float>{1.f, 2.f})).ok());  // wrong size
  EXPECT_FALSE(w->Finish().ok());
  fs::remove_all(dir);
}

std::vector<uint8_t> MakeFile(const std::string& header, size_t data_bytes) {
  std::vector<uint8_t> out(8 + header.size() + data_bytes, 0);
  uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  std::memcpy(out.data() + 8, header.data(), header.size());
  return out;
}

void ExpectError(const std::vector<uint8_t>& bytes, const std::string& what) {
  auto f = SafetensorsFile::Parse(bytes, "bad.safetensors");
  ASSERT_FALSE(f.ok()) << what;
  EXPECT_NE(f.status().message().find("bad.safetensors"), std::string::npos)
      << f.status().message();
  EXPECT_NE(f.status().message().find("offset"), std::string::npos) << f.status().message();
}

TEST(SafetensorsTest, RejectsCorruptHeaders) {
  const std::string ok = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  ASSERT_TRUE(SafetensorsFile::Parse(MakeFile(ok, 8), "x").ok());
  ExpectError(MakeFile(ok, 4), "data too short");
  ExpectError(MakeFile(ok, 12), "trailing bytes");
  ExpectError(MakeFile(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8), "size");
  ExpectError(MakeFile(R"({"a":{"dtype":"X9","shape":[2],"data_offsets":[0,8]}})", 8), "dtype");
  ExpectError(MakeFile(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8), "dim");
  ExpectError(MakeFile(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8), "order");
  ExpectError(MakeFile(R"({"a":{"dtype":"F32","shape":[2]}})", 8), "no offsets");
  ExpectError(MakeFile(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})", 8), "json");
  ExpectError(MakeFile(R"([1,2])", 0), "not an object");
  ExpectError(MakeFile(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],)"
                       R"("data_offsets":[0,8]}})",
                       8),
              "overflow");
  // Two tensors sharing bytes.
  ExpectError(MakeFile(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                       R"("b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                       8),
              "overlap");
  // Found by fuzzing: a number too large for a double threw out of the parser.
  ExpectError(MakeFile(R"({"a":{"dtype":"F32","shape":[1e7777],"data_offsets":[0,8]}})", 8),
              "number overflow");
  // Header length beyond the file.
  std::vector<uint8_t> huge = MakeFile(ok, 8);
  huge[7] = 0x7f;
  ExpectError(huge, "header length");
}

TEST(SafetensorsTest, EveryTruncationIsAnError) {
  fs::path dir = TempDir("trunc");
  std::string path = (dir / "t.safetensors").string();
  auto w = SafetensorsWriter::Create(path, {{"w", Dtype::kF32, {2, 2}}, {"b", Dtype::kF16, {3}}});
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(w->Write("w", AsBytes(std::vector<float>{1, 2, 3, 4})).ok());
  ASSERT_TRUE(w->Write("b", AsBytes(std::vector<uint16_t>{1, 2, 3})).ok());
  ASSERT_TRUE(w->Finish().ok());
  std::vector<uint8_t> bytes = ReadAll(path);
  ASSERT_TRUE(SafetensorsFile::Parse(bytes, "bad.safetensors").ok());
  for (size_t len = 0; len < bytes.size(); ++len) {
    ExpectError(std::vector<uint8_t>(bytes.begin(), bytes.begin() + static_cast<long>(len)),
                "truncated to " + std::to_string(len));
  }
  std::mt19937 rng(7);
  for (int trial = 0; trial < 5000; ++trial) {  // random corruption must never crash
    std::vector<uint8_t> c = bytes;
    c[rng() % c.size()] = static_cast<uint8_t>(rng());
    auto f = SafetensorsFile::Parse(c, "bad.safetensors");
    if (!f.ok()) {
      EXPECT_NE(f.status().message().find("offset"), std::string::npos);
    }
  }
  fs::remove_all(dir);
}

TEST(SafetensorsTest, OpensShardedFolders) {
  fs::path dir = TempDir("sharded");
  for (auto [file, name, value] : {std::tuple{"model-00001-of-00002.safetensors", "x", 1.f},
                                   std::tuple{"model-00002-of-00002.safetensors", "y", 2.f}}) {
    auto w = SafetensorsWriter::Create((dir / file).string(), {{name, Dtype::kF32, {1}}});
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE(w->Write(name, AsBytes(std::vector<float>{value})).ok());
    ASSERT_TRUE(w->Finish().ok());
  }
  ASSERT_TRUE(WriteStringToFile((dir / "model.safetensors.index.json").string(),
                                R"({"metadata":{"total_size":8},"weight_map":{)"
                                R"("x":"model-00001-of-00002.safetensors",)"
                                R"("y":"model-00002-of-00002.safetensors"}})")
                  .ok());
  auto m = SafetensorsModel::OpenFolder(dir.string());
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->TensorNames(), (std::vector<std::string>{"x", "y"}));
  ASSERT_NE(m->Find("y"), nullptr);
  EXPECT_EQ(m->Find("y")->As<float>()[0], 2.f);
  EXPECT_EQ(m->Find("z"), nullptr);

  // An index naming a tensor its shard lacks.
  ASSERT_TRUE(WriteStringToFile((dir / "model.safetensors.index.json").string(),
                                R"({"weight_map":{"x":"model-00002-of-00002.safetensors"}})")
                  .ok());
  EXPECT_FALSE(SafetensorsModel::OpenFolder(dir.string()).ok());
  // An index escaping the folder.
  ASSERT_TRUE(WriteStringToFile((dir / "model.safetensors.index.json").string(),
                                R"({"weight_map":{"x":"../etc/passwd"}})")
                  .ok());
  EXPECT_FALSE(SafetensorsModel::OpenFolder(dir.string()).ok());
  fs::remove_all(dir);
}

TEST(SafetensorsTest, Dtypes) {
  EXPECT_EQ(ParseDtype("BF16"), Dtype::kBF16);
  EXPECT_EQ(ParseDtype("bf16"), std::nullopt);
  EXPECT_EQ(DtypeSize(Dtype::kF64), 8u);
  EXPECT_STREQ(DtypeName(Dtype::kF8_E4M3), "F8_E4M3");
}

}  // namespace
}  // namespace kiln::safetensors
