// config.json of llama, mistral and qwen2 models (abridged from their Hugging Face repositories).
#include "kiln/formats/hf_config.h"

#include <gtest/gtest.h>

namespace kiln::formats {
namespace {

// HuggingFaceTB/SmolLM2-135M-Instruct
const char* kSmolLM2 = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 576,
  "initializer_range": 0.041666666666666664, "intermediate_size": 1536, "is_llama_config": true,
  "max_position_embeddings": 8192, "mlp_bias": false, "model_type": "llama",
  "num_attention_heads": 9, "num_hidden_layers": 30, "num_key_value_heads": 3,
  "pad_token_id": 2, "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_interleaved": false,
  "rope_scaling": null, "rope_theta": 100000, "tie_word_embeddings": true,
  "torch_dtype": "bfloat16", "transformers_version": "4.42.3", "use_cache": true,
  "vocab_size": 49152})";

// meta-llama/Llama-3.2-1B
const char* kLlama32 = R"({
  "architectures": ["LlamaForCausalLM"], "bos_token_id": 128000,
  "eos_token_id": [128001, 128008, 128009], "head_dim": 64, "hidden_size": 2048,
  "intermediate_size": 8192, "max_position_embeddings": 131072, "model_type": "llama",
  "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8,
  "rms_norm_eps": 1e-05, "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0,
  "low_freq_factor": 1.0, "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
  "vocab_size": 128256})";

// mistralai/Mistral-7B-v0.1
const char* kMistral = R"({
  "architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
  "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
  "intermediate_size": 14336, "max_position_embeddings": 32768, "model_type": "mistral",
  "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
  "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "sliding_window": 4096,
  "tie_word_embeddings": false, "torch_dtype": "bfloat16", "use_cache": true,
  "vocab_size": 32000})";

// Qwen/Qwen2.5-0.5B-Instruct
const char* kQwen2 = R"({
  "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
  "eos_token_id": 151645, "hidden_act": "silu", "hidden_size": 896, "initializer_range": 0.02,
  "intermediate_size": 4864, "max_position_embeddings": 32768, "max_window_layers": 21,
  "model_type": "qwen2", "num_attention_heads": 14, "num_hidden_layers": 24,
  "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
  "sliding_window": 32768, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
  "use_cache": true, "use_sliding_window": false, "vocab_size": 151936})";

TEST(HfConfigTest, ParsesSmolLM2) {
  auto c = ParseHfConfig(kSmolLM2, "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->model_type, "llama");
  EXPECT_EQ(c->architecture, "LlamaForCausalLM");
  EXPECT_EQ(c->hidden_size, 576);
  EXPECT_EQ(c->intermediate_size, 1536);
  EXPECT_EQ(c->num_hidden_layers, 30);
  EXPECT_EQ(c->num_attention_heads, 9);
  EXPECT_EQ(c->num_key_value_heads, 3);
  EXPECT_EQ(c->head_dim, 64);  // derived: 576 / 9
  EXPECT_EQ(c->vocab_size, 49152);
  EXPECT_EQ(c->max_position_embeddings, 8192);
  EXPECT_DOUBLE_EQ(c->rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c->rope_theta, 100000.0);
  EXPECT_FALSE(c->rope_scaling.has_value());
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_EQ(c->bos_token_id, 1);
  EXPECT_EQ(c->eos_token_ids, (std::vector<int64_t>{2}));
  EXPECT_EQ(c->pad_token_id, 2);
  EXPECT_EQ(c->torch_dtype, "bfloat16");
  EXPECT_FALSE(c->attention_bias);
  EXPECT_FALSE(c->sliding_window.has_value());
}

TEST(HfConfigTest, ParsesLlama3RopeScalingAndEosList) {
  auto c = ParseHfConfig(kLlama32, "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_EQ(c->eos_token_ids, (std::vector<int64_t>{128001, 128008, 128009}));
  ASSERT_TRUE(c->rope_scaling.has_value());
  EXPECT_EQ(c->rope_scaling->rope_type, "llama3");
  EXPECT_EQ(c->rope_scaling->factor, 32.0);
  EXPECT_EQ(c->rope_scaling->low_freq_factor, 1.0);
  EXPECT_EQ(c->rope_scaling->high_freq_factor, 4.0);
  EXPECT_EQ(c->rope_scaling->original_max_position_embeddings, 8192);
  EXPECT_EQ(c->pad_token_id, std::nullopt);
}

TEST(HfConfigTest, ParsesMistral) {
  auto c = ParseHfConfig(kMistral, "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->model_type, "mistral");
  EXPECT_EQ(c->sliding_window, 4096);
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_FALSE(c->attention_bias);
}

TEST(HfConfigTest, ParsesQwen2) {
  auto c = ParseHfConfig(kQwen2, "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->model_type, "qwen2");
  EXPECT_TRUE(c->attention_bias);               // Qwen2 q/k/v projections always carry a bias
  EXPECT_FALSE(c->sliding_window.has_value());  // use_sliding_window is false
  EXPECT_EQ(c->num_key_value_heads, 2);
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_DOUBLE_EQ(c->rope_theta, 1e6);
  EXPECT_EQ(c->eos_token_ids, (std::vector<int64_t>{151645}));
}

TEST(HfConfigTest, AppliesTransformersDefaults) {
  auto c = ParseHfConfig(R"({"model_type": "llama", "hidden_size": 64,
      "num_attention_heads": 4, "num_hidden_layers": 2, "intermediate_size": 128,
      "vocab_size": 100})",
                         "c.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->num_key_value_heads, 4);
  EXPECT_EQ(c->head_dim, 16);
  EXPECT_EQ(c->max_position_embeddings, 2048);
  EXPECT_EQ(c->rope_theta, 10000.0);
  EXPECT_EQ(c->rms_norm_eps, 1e-6);
  EXPECT_EQ(c->bos_token_id, 1);
  EXPECT_EQ(c->eos_token_ids, (std::vector<int64_t>{2}));
  auto m = ParseHfConfig(R"({"model_type": "mistral"})", "c.json");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->sliding_window, 4096);
  EXPECT_EQ(m->num_key_value_heads, 8);
}

TEST(HfConfigTest, WriteParsesBackEqual) {
  for (const char* text : {kSmolLM2, kLlama32, kMistral, kQwen2}) {
    auto c = ParseHfConfig(text, "config.json");
    ASSERT_TRUE(c.ok());
    std::string written = HfConfigToJson(*c);
    auto back = ParseHfConfig(written, "written.json");
    ASSERT_TRUE(back.ok()) << back.status().ToString() << "\n" << written;
    EXPECT_EQ(*back, *c) << written;
  }
  ModelConfig none = *ParseHfConfig(kMistral, "c");
  none.sliding_window.reset();
  none.bos_token_id.reset();
  none.eos_token_ids.clear();
  EXPECT_EQ(*ParseHfConfig(HfConfigToJson(none), "c"), none);  // null is not the default
}

// google/gemma-3-270m's config.json.
constexpr const char* kGemma3_270m = R"({
  "_sliding_window_pattern": 6, "architectures": ["Gemma3ForCausalLM"], "attention_bias": false,
  "attention_dropout": 0.0, "attn_logit_softcapping": null, "bos_token_id": 2,
  "eos_token_id": 1, "final_logit_softcapping": null, "head_dim": 256,
  "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 640, "initializer_range": 0.02,
  "intermediate_size": 2048,
  "layer_types": ["sliding_attention", "sliding_attention", "sliding_attention",
    "sliding_attention", "sliding_attention", "full_attention", "sliding_attention",
    "sliding_attention", "sliding_attention", "sliding_attention", "sliding_attention",
    "full_attention", "sliding_attention", "sliding_attention", "sliding_attention",
    "sliding_attention", "sliding_attention", "full_attention"],
  "max_position_embeddings": 32768, "model_type": "gemma3_text", "num_attention_heads": 4,
  "num_hidden_layers": 18, "num_key_value_heads": 1, "pad_token_id": 0,
  "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06, "rope_local_base_freq": 10000.0,
  "rope_scaling": null, "rope_theta": 1000000.0, "sliding_window": 512,
  "torch_dtype": "bfloat16", "transformers_version": "4.55.0.dev0",
  "use_bidirectional_attention": false, "use_cache": true, "vocab_size": 262144})";

TEST(HfConfigTest, ParsesGemma3Text) {
  auto c = ParseHfConfig(kGemma3_270m, "config.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->model_type, "gemma3_text");
  EXPECT_EQ(c->hidden_act, "gelu_pytorch_tanh");
  EXPECT_EQ(c->head_dim, 256);
  EXPECT_TRUE(c->tie_word_embeddings);  // Gemma 3's default
  EXPECT_EQ(c->sliding_window, 512);
  EXPECT_EQ(c->rope_local_base_freq, 10000.0);
  EXPECT_EQ(c->query_pre_attn_scalar, 256.0);
  ASSERT_EQ(c->layer_types.size(), 18u);
  for (int64_t i = 0; i < 18; ++i) EXPECT_EQ(IsSlidingLayer(*c, i), (i + 1) % 6 != 0) << i;
  auto back = ParseHfConfig(HfConfigToJson(*c), "written.json");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, *c);
  // Gemma 3 1B's older form: the pattern instead of the list.
  auto one_b = ParseHfConfig(R"({"model_type": "gemma3_text", "num_hidden_layers": 26,
      "sliding_window": 512, "sliding_window_pattern": 6})",
                             "c.json");
  ASSERT_TRUE(one_b.ok()) << one_b.status().ToString();
  EXPECT_EQ(one_b->layer_types, Gemma3LayerTypes(26, 6));
  EXPECT_TRUE(IsSlidingLayer(*one_b, 4));
  EXPECT_FALSE(IsSlidingLayer(*one_b, 5));
}

TEST(HfConfigTest, RefusesGemma3VariantsItCannotRun) {
  for (const char* text :
       {R"({"model_type": "gemma3_text", "final_logit_softcapping": 30.0})",
        R"({"model_type": "gemma3_text", "use_bidirectional_attention": true})",
        R"({"model_type": "gemma3_text", "num_hidden_layers": 2, "layer_types": ["x", "y"]})"}) {
    auto c = ParseHfConfig(text, "c.json");
    EXPECT_FALSE(c.ok()) << text;
  }
  auto vision = ParseHfConfig(R"({"model_type": "gemma3"})", "c.json");
  ASSERT_FALSE(vision.ok());
  EXPECT_EQ(vision.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(vision.status().message().find("gemma3_text"), std::string::npos);
}

TEST(HfConfigTest, ErrorsNameTheFileAndKey) {
  auto bad_json = ParseHfConfig("{\"model_type\": \"llama\",, }", "cfg.json");
  ASSERT_FALSE(bad_json.ok());
  EXPECT_NE(bad_json.status().message().find("cfg.json: offset 24"), std::string::npos)
      << bad_json.status().message();
  auto bad_type = ParseHfConfig(R"({"model_type": "llama", "hidden_size": "big"})", "cfg.json");
  ASSERT_FALSE(bad_type.ok());
  EXPECT_NE(bad_type.status().message().find("\"hidden_size\""), std::string::npos);
  auto bad_kv = ParseHfConfig(R"({"model_type": "llama", "num_key_value_heads": 5})", "c");
  EXPECT_FALSE(bad_kv.ok());
  auto other = ParseHfConfig(R"({"model_type": "gpt2"})", "cfg.json");
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.status().code(), StatusCode::kUnsupported);
  EXPECT_FALSE(ParseHfConfig("[]", "c").ok());
  EXPECT_FALSE(ParseHfConfig(R"({"model_type": "llama", "rope_theta": 1e999})", "c").ok());
}

}  // namespace
}  // namespace kiln::formats
