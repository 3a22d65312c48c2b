// The converter on small folders written here: the int4 block quantizer's arithmetic, the
// files and genai_config.json it writes, and the errors for inputs it cannot convert.
// tests/python/test_convert.py runs the converted models in ONNX Runtime and its GenAI library.
#include "kiln/formats/genai_model_builder.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kiln/base/mapped_file.h"
#include "kiln/executors/onnx/ort_session.h"
#include "kiln/formats/hf_config.h"
#include "kiln/formats/safetensors.h"

namespace kiln::formats {
namespace {

namespace fs = std::filesystem;

int Code(const std::vector<uint8_t>& packed, int j) {
  return j % 2 == 0 ? packed[j / 2] & 0xf : packed[j / 2] >> 4;
}

TEST(QuantizeInt4Test, SymmetricMapsTheLargestMagnitudeToCodeZero) {
  // Block of 32: -4 at 0, +2 at 1, 1 at 2, the rest 0. The largest magnitude is -4, so
  // scale = -(-4) / 8 = 0.5 and x -> round(x / 0.5 + 8).
  std::vector<float> row(32, 0.0f);
  row[0] = -4.0f;
  row[1] = 2.0f;
  row[2] = 1.0f;
  row[3] = 0.26f;  // 8.52 rounds to 9
  row[4] = 3.9f;   // 15.8 rounds to 16, clamped to 15
  std::vector<uint8_t> packed(16);
  float scale = 0;
  uint8_t zp = 0;
  QuantizeInt4Row(row.data(), 32, 32, true, packed.data(), &scale, &zp);
  EXPECT_FLOAT_EQ(scale, 0.5f);
  EXPECT_EQ(zp, 8);
  EXPECT_EQ(Code(packed, 0), 0);
  EXPECT_EQ(Code(packed, 1), 12);
  EXPECT_EQ(Code(packed, 2), 10);
  EXPECT_EQ(Code(packed, 3), 9);
  EXPECT_EQ(Code(packed, 4), 15);
  EXPECT_EQ(Code(packed, 5), 8);
  EXPECT_EQ(packed[0], 0xc0);  // element 0 in the low nibble, element 1 in the high one
}

TEST(QuantizeInt4Test, SymmetricPositiveMaximumGivesANegativeScale) {
  std::vector<float> row(32, 1.0f);
  row[7] = 8.0f;
  std::vector<uint8_t> packed(16);
  float scale = 0;
  uint8_t zp = 0;
  QuantizeInt4Row(row.data(), 32, 32, true, packed.data(), &scale, &zp);
  EXPECT_FLOAT_EQ(scale, -1.0f);
  EXPECT_EQ(Code(packed, 7), 0);  // (0 - 8) * -1 = 8
  EXPECT_EQ(Code(packed, 0), 7);  // (7 - 8) * -1 = 1
}

TEST(QuantizeInt4Test, AsymmetricUsesTheRangeWithZero) {
  // Values in [1, 16]: the range is widened to [0, 16], scale 16 / 15, zero point 0.
  std::vector<float> row(32);
  for (int j = 0; j < 32; ++j) row[j] = 1.0f + 15.0f * static_cast<float>(j) / 31.0f;
  std::vector<uint8_t> packed(16);
  float scale = 0;
  uint8_t zp = 99;
  QuantizeInt4Row(row.data(), 32, 32, false, packed.data(), &scale, &zp);
  EXPECT_FLOAT_EQ(scale, 16.0f / 15.0f);
  EXPECT_EQ(zp, 0);
  EXPECT_EQ(Code(packed, 31), 15);
  for (int j = 0; j < 32; ++j) {
    EXPECT_LE(std::fabs(Code(packed, j) * scale - row[j]), scale / 2 + 1e-6f) << j;
  }
  // [-3, 12]: scale 1, zero point 3.
  for (int j = 0; j < 32; ++j) row[j] = static_cast<float>(j % 16) - 3.0f;
  QuantizeInt4Row(row.data(), 32, 32, false, packed.data(), &scale, &zp);
  EXPECT_FLOAT_EQ(scale, 1.0f);
  EXPECT_EQ(zp, 3);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(Code(packed, j), j % 16) << j;
}

TEST(QuantizeInt4Test, PartialLastBlockUsesTheValuesPresent) {
  // Two blocks; the second holds 8 values in [1, 2] and 24 missing ones.
  std::vector<float> row(40, 2.0f);
  for (int j = 32; j < 40; ++j) row[j] = 1.0f + static_cast<float>(j - 32) / 7.0f;
  std::vector<uint8_t> packed(32, 0xff);
  float scales[2];
  uint8_t zps[2];
  QuantizeInt4Row(row.data(), 40, 32, false, packed.data(), scales, zps);
  // Asymmetric ranges always include 0: [0, 2], scale 2 / 15, zero point 0.
  EXPECT_FLOAT_EQ(scales[1], 2.0f / 15.0f);
  EXPECT_EQ(zps[1], 0);
  EXPECT_EQ(Code(packed, 39), 15);
  for (int j = 40; j < 64; ++j) EXPECT_EQ(Code(packed, j), 0) << j;
  QuantizeInt4Row(row.data(), 40, 32, true, packed.data(), scales, zps);
  EXPECT_FLOAT_EQ(scales[1], -0.25f);  // the largest value present is 2
  EXPECT_EQ(Code(packed, 39), 0);
  for (int j = 40; j < 64; ++j) EXPECT_EQ(Code(packed, j), 0) << j;
}

// A small llama folder: 1 layer, hidden 32, 2 heads of 16, 1 KV head, vocabulary 40.
class ConvertTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("kiln_convert_test_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    in_ = root_ / "in";
    out_ = root_ / "out";
    fs::create_directories(in_);
    config_.model_type = "llama";
    config_.architecture = "LlamaForCausalLM";
    config_.hidden_size = 32;
    config_.intermediate_size = 48;
    config_.num_hidden_layers = 1;
    config_.num_attention_heads = 2;
    config_.num_key_value_heads = 1;
    config_.head_dim = 16;
    config_.vocab_size = 40;
    config_.max_position_embeddings = 64;
    config_.tie_word_embeddings = true;
    config_.bos_token_id = 1;
    config_.eos_token_ids = {2};
    config_.torch_dtype = "float32";
  }
  void TearDown() override { fs::remove_all(root_); }

  std::map<std::string, std::vector<int64_t>> Shapes() const {
    int64_t h = config_.hidden_size, i = config_.intermediate_size;
    int64_t q = config_.num_attention_heads * config_.head_dim;
    int64_t kv = config_.num_key_value_heads * config_.head_dim;
    std::map<std::string, std::vector<int64_t>> s = {
        {"model.embed_tokens.weight", {config_.vocab_size, h}},
        {"model.norm.weight", {h}},
        {"model.layers.0.input_layernorm.weight", {h}},
        {"model.layers.0.post_attention_layernorm.weight", {h}},
        {"model.layers.0.self_attn.q_proj.weight", {q, h}},
        {"model.layers.0.self_attn.k_proj.weight", {kv, h}},
        {"model.layers.0.self_attn.v_proj.weight", {kv, h}},
        {"model.layers.0.self_attn.o_proj.weight", {h, q}},
        {"model.layers.0.mlp.gate_proj.weight", {i, h}},
        {"model.layers.0.mlp.up_proj.weight", {i, h}},
        {"model.layers.0.mlp.down_proj.weight", {h, i}},
    };
    return s;
  }

  void WriteWeights(std::map<std::string, std::vector<int64_t>> shapes) {
    std::vector<safetensors::TensorSpec> specs;
    for (const auto& [name, shape] : shapes) {
      specs.push_back({name, safetensors::Dtype::kF32, shape});
    }
    auto writer =
        safetensors::SafetensorsWriter::Create((in_ / "model.safetensors").string(), specs);
    ASSERT_TRUE(writer.ok()) << writer.status().ToString();
    std::vector<safetensors::TensorSpec> order = writer->order();
    for (const auto& spec : order) {
      int64_t n = 1;
      for (int64_t d : spec.shape) n *= d;
      std::vector<float> values(static_cast<size_t>(n));
      for (int64_t j = 0; j < n; ++j) values[j] = 0.01f * static_cast<float>((j * 7) % 13) - 0.05f;
      ASSERT_TRUE(writer
                      ->Write(spec.name,
                              {reinterpret_cast<const uint8_t*>(values.data()), values.size() * 4})
                      .ok());
    }
    ASSERT_TRUE(writer->Finish().ok());
  }

  void WriteFolder() {
    Write("config.json", HfConfigToJson(config_));
    // The tokenizer's eos_token is "<|im_end|>" (id 39), which config.json leaves out.
    Write("tokenizer.json", R"({"added_tokens": [{"id": 39, "content": "<|im_end|>"}],)"
                            R"( "model": {"vocab": {"a": 0}}})");
    Write("tokenizer_config.json", R"({"eos_token": "<|im_end|>", "bos_token": null})");
    WriteWeights(Shapes());
  }

  void Write(const std::string& name, const std::string& text) {
    ASSERT_TRUE(WriteStringToFile((in_ / name).string(), text).ok());
  }

  Result<GenaiConvertStats> Convert(GenaiPrecision precision = GenaiPrecision::kF32) {
    GenaiConvertOptions options;
    options.precision = precision;
    return ConvertHfToGenai(in_.string(), out_.string(), options);
  }

  fs::path root_;
  fs::path in_;
  fs::path out_;
  ModelConfig config_;
};

TEST_F(ConvertTest, WritesAGenaiFolder) {
  WriteFolder();
  for (GenaiPrecision p : {GenaiPrecision::kF32, GenaiPrecision::kInt4}) {
    auto stats = Convert(p);
    ASSERT_TRUE(stats.ok()) << stats.status().ToString();
    for (const char* f : {"model.onnx", "model.onnx.data", "genai_config.json", "tokenizer.json",
                          "tokenizer_config.json"}) {
      EXPECT_TRUE(fs::exists(out_ / f)) << f;
    }
    EXPECT_EQ(stats->data_bytes, fs::file_size(out_ / "model.onnx.data"));
    EXPECT_EQ(stats->model_bytes, fs::file_size(out_ / "model.onnx"));
    int64_t params = 40 * 32 + 32 * 3 + 32 * 32 + 2 * 16 * 32 + 32 * 32 + 3 * 48 * 32;
    EXPECT_EQ(stats->parameters, static_cast<uint64_t>(params));
  }
  auto text = ReadFileToString((out_ / "genai_config.json").string());
  ASSERT_TRUE(text.ok());
  nlohmann::json j = nlohmann::json::parse(*text);
  EXPECT_EQ(j["model"]["type"], "llama");
  EXPECT_EQ(j["model"]["context_length"], 64);
  EXPECT_EQ(j["model"]["bos_token_id"], 1);
  EXPECT_EQ(j["model"]["eos_token_id"], nlohmann::json::array({39, 2}));
  EXPECT_EQ(j["model"]["pad_token_id"], 2);  // no pad anywhere: the first eos id from config
  EXPECT_EQ(j["model"]["decoder"]["head_size"], 16);
  EXPECT_EQ(j["model"]["decoder"]["num_key_value_heads"], 1);
  EXPECT_EQ(j["search"]["max_length"], 64);
  EXPECT_EQ(j["search"]["past_present_share_buffer"], true);
}

TEST_F(ConvertTest, GenerationConfigOverridesConfig) {
  WriteFolder();
  Write("generation_config.json",
        R"({"eos_token_id": [39, 5], "pad_token_id": 7, "temperature": 0.6, "top_p": 0.9})");
  ASSERT_TRUE(Convert().ok());
  auto text = ReadFileToString((out_ / "genai_config.json").string());
  ASSERT_TRUE(text.ok());
  nlohmann::json j = nlohmann::json::parse(*text);
  EXPECT_EQ(j["model"]["eos_token_id"], nlohmann::json::array({39, 5}));
  EXPECT_EQ(j["model"]["pad_token_id"], 7);
  EXPECT_DOUBLE_EQ(j["search"]["temperature"].get<double>(), 0.6);
  EXPECT_DOUBLE_EQ(j["search"]["top_p"].get<double>(), 0.9);
  EXPECT_EQ(j["search"]["top_k"], 50);
  EXPECT_TRUE(fs::exists(out_ / "generation_config.json"));
}

TEST_F(ConvertTest, MissingConfigNamesTheFile) {
  auto r = Convert();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("config.json"), std::string::npos) << r.status().message();
}

TEST_F(ConvertTest, UnsupportedActivationIsRefused) {
  config_.hidden_act = "gelu";
  WriteFolder();
  auto r = Convert();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(r.status().message().find("hidden_act"), std::string::npos) << r.status().message();
}

TEST_F(ConvertTest, UnsupportedRopeScalingIsRefused) {
  config_.rope_scaling = RopeScaling{"yarn", 4.0, std::nullopt, std::nullopt, 64};
  WriteFolder();
  auto r = Convert();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(r.status().message().find("yarn"), std::string::npos) << r.status().message();
}

TEST_F(ConvertTest, MissingTensorIsNamed) {
  WriteFolder();
  auto shapes = Shapes();
  shapes.erase("model.layers.0.mlp.up_proj.weight");
  WriteWeights(shapes);
  auto r = Convert();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("model.layers.0.mlp.up_proj.weight"), std::string::npos)
      << r.status().message();
}

TEST_F(ConvertTest, WrongShapeNamesFileAndTensor) {
  WriteFolder();
  auto shapes = Shapes();
  shapes["model.layers.0.self_attn.k_proj.weight"] = {32, 32};
  WriteWeights(shapes);
  auto r = Convert();
  ASSERT_FALSE(r.ok());
  const std::string& m = r.status().message();
  EXPECT_NE(m.find("model.safetensors"), std::string::npos) << m;
  EXPECT_NE(m.find("k_proj"), std::string::npos) << m;
  EXPECT_NE(m.find("[16, 32]"), std::string::npos) << m;
}

TEST_F(ConvertTest, TruncatedSafetensorsNamesTheFile) {
  WriteFolder();
  fs::resize_file(in_ / "model.safetensors", fs::file_size(in_ / "model.safetensors") - 100);
  auto r = Convert();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("model.safetensors"), std::string::npos)
      << r.status().message();
}

TEST_F(ConvertTest, MissingTokenizerNamesTheFile) {
  WriteFolder();
  fs::remove(in_ / "tokenizer.json");
  auto r = Convert();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("tokenizer.json"), std::string::npos) << r.status().message();
}

onnx::HostTensor Int64Tensor(std::vector<int64_t> shape, const std::vector<int64_t>& values) {
  onnx::HostTensor t;
  t.type = onnx::ElementType::kInt64;
  t.shape = std::move(shape);
  t.data.resize(values.size() * 8);
  std::memcpy(t.data.data(), values.data(), t.data.size());
  return t;
}

// Kiln's own ONNX Runtime session loads the converted model and runs a prompt, then one decode
// step on the returned cache.
TEST_F(ConvertTest, KilnOrtSessionRunsTheConvertedModel) {
  WriteFolder();
  for (GenaiPrecision p : {GenaiPrecision::kF32, GenaiPrecision::kInt4}) {
    ASSERT_TRUE(Convert(p).ok());
    auto session = onnx::OrtSession::Load((out_ / "model.onnx").string(), {});
    ASSERT_TRUE(session.ok()) << session.status().ToString();
    std::map<std::string, onnx::HostTensor> inputs;
    inputs["input_ids"] = Int64Tensor({1, 3}, {1, 5, 7});
    inputs["attention_mask"] = Int64Tensor({1, 3}, {1, 1, 1});
    for (const char* kind : {"key", "value"}) {
      onnx::HostTensor empty;
      empty.shape = {1, 1, 0, 16};
      inputs[std::string("past_key_values.0.") + kind] = empty;
    }
    auto out = (*session)->Run(inputs);
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    EXPECT_EQ(out->at("logits").shape, (std::vector<int64_t>{1, 3, 40}));
    EXPECT_EQ(out->at("present.0.key").shape, (std::vector<int64_t>{1, 1, 3, 16}));

    inputs["input_ids"] = Int64Tensor({1, 1}, {9});
    inputs["attention_mask"] = Int64Tensor({1, 4}, {1, 1, 1, 1});
    inputs["past_key_values.0.key"] = out->at("present.0.key");
    inputs["past_key_values.0.value"] = out->at("present.0.value");
    auto step = (*session)->Run(inputs);
    ASSERT_TRUE(step.ok()) << step.status().ToString();
    EXPECT_EQ(step->at("logits").shape, (std::vector<int64_t>{1, 1, 40}));
    EXPECT_EQ(step->at("present.0.value").shape, (std::vector<int64_t>{1, 1, 4, 16}));
    const auto& logits = step->at("logits").data;
    for (size_t i = 0; i < logits.size(); i += 4) {
      float v;
      std::memcpy(&v, &logits[i], 4);
      ASSERT_TRUE(std::isfinite(v));
    }
  }
}

}  // namespace
}  // namespace kiln::formats
