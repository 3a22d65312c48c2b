// ServedModel: one generative model loaded for serving — its tokenizer, chat template and
// engine (on the runtime its folder calls for).
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "kiln/base/status.h"
#include "kiln/engine/engine.h"
#include "kiln/server/generation_defaults.h"
#include "kiln/text/jinja/template.h"
#include "kiln/text/token_bytes.h"
#include "kiln/text/token_masker.h"
#include "kiln/text/tokenizer.h"

namespace kiln::server {

// The generative runtimes: onnx-genai runs ONNX Runtime GenAI folders; vllm (the native paged
// engine) runs Hugging Face folders and GGUF files.
enum class Runtime { kOnnxGenai, kVllm };
const char* RuntimeName(Runtime runtime);  // "onnx-genai", "vllm"

struct ModelOptions {
  // An ONNX Runtime GenAI folder, a Hugging Face folder (config.json + safetensors) or a GGUF
  // file.
  std::string path;
  // "auto" (from the files), "onnx-genai" or "vllm"; a runtime that cannot serve the files is
  // an error saying which does.
  std::string runtime = "auto";
  std::string served_model_name;  // default: the folder's name
  int64_t max_model_len = 0;      // 0: the model's context length, at most 4096
  int32_t max_num_seqs = 16;
  int64_t max_num_batched_tokens = 2048;
  bool enable_prefix_caching = true;
  // Requests that may wait for a free sequence slot at once; more get 429. 0: no limit.
  int64_t max_queued_requests = 256;
  std::string device = "cpu";
  int threads = 0;  // compute threads (ONNX Runtime intra-op, or the native pool); 0: per core
  int64_t kv_cache_bytes = 0;  // vllm runtime: KV cache size; 0: from the plan, <= 4 GiB
  // vllm runtime: auto (f32), float32, bfloat16, fp8 or fp8_e4m3 (native/kv_cache.h).
  std::string kv_cache_dtype = "auto";
  // vllm runtime: "none" (weights as stored) or "int8" (bf16/f16/f32 matrices quantized per
  // output channel at load).
  std::string quantization = "none";
  // Sampling defaults: "auto" (the folder's), "vllm" (built-in) or a folder
  // (generation_defaults.h).
  std::string generation_config = "auto";
  // A JSON object of sampling defaults over all of the above (--override-generation-config).
  std::string override_generation_config;
};

// Which runtime serves options.path (what options.runtime asks, checked against the files).
Result<Runtime> ChooseRuntime(const ModelOptions& options);

class ServedModel {
 public:
  static Result<std::unique_ptr<ServedModel>> Load(const ModelOptions& options);

  const std::string& id() const { return id_; }
  const std::string& runtime() const { return runtime_; }
  int64_t max_model_len() const { return max_model_len_; }
  int64_t created() const { return created_; }
  const text::Tokenizer& tokenizer() const { return tokenizer_; }
  engine::Engine& engine() { return *engine_; }
  const std::vector<int32_t>& eos_ids() const { return eos_ids_; }
  // What a request's absent sampling fields become.
  const GenerationDefaults& generation_defaults() const { return generation_defaults_; }
  bool has_chat_template() const { return chat_template_.has_value(); }
  // Whether the chat template itself writes the `tools` into the prompt.
  bool template_renders_tools() const { return template_renders_tools_; }
  // Each token's bytes, and the vocabulary trie that constrained decoding walks.
  const std::shared_ptr<const text::TokenBytes>& token_bytes() const { return token_bytes_; }
  const std::shared_ptr<const text::TokenMasker>& token_masker() const { return token_masker_; }

  // Renders messages through the chat template (as transformers' apply_chat_template does).
  // `tools` may be null. Errors are InvalidArgument with the template's message.
  Result<std::string> RenderChat(const nlohmann::ordered_json& messages,
                                 const nlohmann::ordered_json* tools, bool add_generation_prompt,
                                 bool continue_final_message) const;

 private:
  ServedModel() = default;
  std::string id_;
  std::string runtime_;
  int64_t max_model_len_ = 0;
  int64_t created_ = 0;
  text::Tokenizer tokenizer_;
  std::optional<jinja::Template> chat_template_;
  bool template_renders_tools_ = false;
  std::string bos_token_, eos_token_;
  std::vector<int32_t> eos_ids_;
  GenerationDefaults generation_defaults_;
  std::shared_ptr<const text::TokenBytes> token_bytes_;
  std::shared_ptr<const text::TokenMasker> token_masker_;
  std::unique_ptr<engine::Engine> engine_;
};

}  // namespace kiln::server
