#include "kiln/server/generation_defaults.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "kiln/server/openai_protocol.h"

namespace kiln::server {
namespace {

namespace fs = std::filesystem;

class GenerationDefaultsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("kiln_generation_defaults_" +
            std::to_string(::testing::UnitTest::GetInstance()->current_test_info()->line()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
  }
  Result<GenerationDefaults> Load(const std::string& mode, const std::string& override_json = "") {
    GenerationSources sources;
    sources.model_dir = dir_.string();
    sources.mode = mode;
    sources.override_json = override_json;
    return LoadGenerationDefaults(sources);
  }
  fs::path dir_;
};

TEST_F(GenerationDefaultsTest, GenerationConfigGivesVllmsFieldsAndIgnoresDoSample) {
  Write("generation_config.json", R"({"bos_token_id": 1, "do_sample": false, "temperature": 0.6,
      "top_p": 0.9, "top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1,
      "max_new_tokens": 256})");
  auto d = Load("auto");
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_FLOAT_EQ(d->params.temperature, 0.6f);
  EXPECT_FLOAT_EQ(d->params.top_p, 0.9f);
  EXPECT_EQ(d->params.top_k, 20);
  EXPECT_FLOAT_EQ(d->params.min_p, 0.05f);
  EXPECT_FLOAT_EQ(d->params.repetition_penalty, 1.1f);
  ASSERT_TRUE(d->max_tokens.has_value());
  EXPECT_EQ(*d->max_tokens, 256);
  EXPECT_EQ(d->applied.size(), 6u);
}

TEST_F(GenerationDefaultsTest, GenaiSearchWithoutSamplingIsGreedy) {
  Write("generation_config.json", R"({"temperature": 0.7})");
  Write("genai_config.json", R"({"search": {"do_sample": false, "temperature": 1.0,
      "top_k": 50, "top_p": 1.0, "repetition_penalty": 1.0, "max_length": 2048}})");
  auto d = Load("auto");
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_EQ(d->params.temperature, 0.0f);
  EXPECT_TRUE(d->params.greedy());
  EXPECT_EQ(d->params.top_k, 0);  // ignored without sampling
  EXPECT_FALSE(d->max_tokens.has_value());
}

TEST_F(GenerationDefaultsTest, GenaiSearchWithSamplingGivesItsSettings) {
  Write("genai_config.json", R"({"search": {"do_sample": true, "temperature": 0.8,
      "top_k": 40, "top_p": 0.95}})");
  auto d = Load("auto");
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_FLOAT_EQ(d->params.temperature, 0.8f);
  EXPECT_EQ(d->params.top_k, 40);
  EXPECT_FLOAT_EQ(d->params.top_p, 0.95f);
}

TEST_F(GenerationDefaultsTest, VllmModeIgnoresTheFolder) {
  Write("genai_config.json", R"({"search": {"do_sample": false}})");
  auto d = Load("vllm");
  ASSERT_TRUE(d.ok());
  EXPECT_FLOAT_EQ(d->params.temperature, 1.0f);
  EXPECT_FLOAT_EQ(d->params.top_p, 1.0f);
  EXPECT_TRUE(d->applied.empty());
}

TEST_F(GenerationDefaultsTest, AnotherFolderGivesItsGenerationConfig) {
  Write("genai_config.json", R"({"search": {"do_sample": false}})");
  fs::path other = dir_ / "other";
  fs::create_directories(other);
  std::ofstream(other / "generation_config.json") << R"({"temperature": 0.3})";
  auto d = Load(other.string());
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_FLOAT_EQ(d->params.temperature, 0.3f);
  auto missing = Load((dir_ / "nowhere").string());
  EXPECT_FALSE(missing.ok());
}

TEST_F(GenerationDefaultsTest, BadValuesNameTheFileAndField) {
  Write("generation_config.json", R"({"temperature": 7})");
  auto d = Load("auto");
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("generation_config.json"), std::string::npos);
  EXPECT_NE(d.status().message().find("temperature"), std::string::npos);
  Write("generation_config.json", "{not json");
  EXPECT_FALSE(Load("auto").ok());
}

TEST_F(GenerationDefaultsTest, AGgufFileGivesItsSamplingMetadataAndNotTheFilesBesideIt) {
  Write("generation_config.json", R"({"temperature": 0.3})");
  GenerationSources sources;  // a GGUF file: no model folder
  sources.gguf_fields = {{"temperature", 0.6}, {"top_k", 40}, {"repetition_penalty", 1.1}};
  auto d = LoadGenerationDefaults(sources);
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_FLOAT_EQ(d->params.temperature, 0.6f);
  EXPECT_EQ(d->params.top_k, 40);
  EXPECT_FLOAT_EQ(d->params.repetition_penalty, 1.1f);
  EXPECT_EQ(d->applied["top_k"]["from"], "GGUF general.sampling");
  sources.gguf_fields = {{"top_p", 3}};
  auto bad = LoadGenerationDefaults(sources);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("top_p"), std::string::npos);
  sources.gguf_fields = nlohmann::json::object();
  auto none = LoadGenerationDefaults(sources);
  ASSERT_TRUE(none.ok());
  EXPECT_FLOAT_EQ(none->params.temperature, 1.0f);
  EXPECT_TRUE(none->applied.empty());
}

TEST_F(GenerationDefaultsTest, TheOverrideGoesOverTheModelsSettings) {
  Write("genai_config.json", R"({"search": {"do_sample": true, "temperature": 0.8,
      "top_k": 40}})");
  auto d = Load("auto", R"({"temperature": 0, "max_new_tokens": 64})");
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_EQ(d->params.temperature, 0.0f);
  EXPECT_EQ(d->params.top_k, 40);  // the model's, not overridden
  ASSERT_TRUE(d->max_tokens.has_value());
  EXPECT_EQ(*d->max_tokens, 64);
  EXPECT_EQ(d->applied["temperature"]["from"], "--override-generation-config");
  // Over vLLM's built-in defaults too.
  auto v = Load("vllm", R"({"top_p": 0.5})");
  ASSERT_TRUE(v.ok());
  EXPECT_FLOAT_EQ(v->params.top_p, 0.5f);
  EXPECT_FLOAT_EQ(v->params.temperature, 1.0f);
  for (const char* bad : {"[1]", "{not json", R"({"temprature": 0})", R"({"top_k": "x"})"}) {
    auto r = Load("auto", bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("--override-generation-config"), std::string::npos)
        << r.status().message();
  }
}

TEST_F(GenerationDefaultsTest, RequestsOverrideOnlyTheFieldsTheyName) {
  engine::SamplingParams defaults;
  defaults.temperature = 0.0f;
  defaults.top_k = 7;
  auto parse = [&](const char* text) {
    auto r = ParseChatCompletionRequest(nlohmann::ordered_json::parse(text), defaults);
    EXPECT_TRUE(std::holds_alternative<ChatCompletionRequest>(r));
    return std::get<ChatCompletionRequest>(r).options.sampling;
  };
  auto absent = parse(R"({"model": "m", "messages": [{"role": "user", "content": "x"}]})");
  EXPECT_EQ(absent.temperature, 0.0f);
  EXPECT_EQ(absent.top_k, 7);
  auto given = parse(
      R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 0.5})");
  EXPECT_FLOAT_EQ(given.temperature, 0.5f);
  EXPECT_EQ(given.top_k, 7);
}

}  // namespace
}  // namespace kiln::server
