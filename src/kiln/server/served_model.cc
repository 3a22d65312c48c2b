#include "kiln/server/served_model.h"

#include <chrono>
#include <filesystem>

#include "kiln/base/log.h"
#include "kiln/base/mapped_file.h"
#include "kiln/executors/onnx/genai_executor.h"

namespace kiln::server {
namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

std::string TokenText(const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) {
    return v["content"].get<std::string>();
  }
  return "";
}

}  // namespace

Result<std::unique_ptr<ServedModel>> ServedModel::Load(const ModelOptions& options) {
  const fs::path dir(options.path);
  std::error_code ec;
  if (fs::is_regular_file(dir, ec)) {
    return Status::InvalidArgument(options.path +
                                   ": a file; --model takes a model folder (run `kiln import` "
                                   "for a GGUF file, then `kiln convert`)");
  }
  if (!fs::exists(dir / "genai_config.json", ec)) {
    if (fs::exists(dir / "config.json", ec)) {
      return Status::InvalidArgument(options.path +
                                     " is a Hugging Face folder; the onnx-genai runtime "
                                     "serves ONNX Runtime GenAI folders: run `kiln convert " +
                                     options.path + " <out>` first");
    }
    return Status::NotFound(options.path +
                            ": no genai_config.json (not an ONNX Runtime GenAI folder)");
  }
  std::unique_ptr<ServedModel> m(new ServedModel());
  m->runtime_ = "onnx-genai";
  m->id_ = options.served_model_name.empty() ? fs::path(options.path).filename().string()
                                             : options.served_model_name;
  if (m->id_.empty()) m->id_ = fs::absolute(dir).parent_path().filename().string();
  m->created_ = std::chrono::duration_cast<std::chrono::seconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();

  KILN_ASSIGN_OR_RETURN(m->tokenizer_,
                        text::Tokenizer::FromJsonFile((dir / "tokenizer.json").string()));
  m->token_bytes_ =
      std::make_shared<text::TokenBytes>(text::TokenBytes::FromTokenizer(m->tokenizer_));
  m->token_masker_ = text::TokenMasker::Create(*m->token_bytes_);
  if (!m->token_masker_->spells_every_byte()) {
    LogWarning(
        "the vocabulary lacks single-byte tokens for some bytes JSON can need: structured "
        "output still follows its schema, but a reply near max_tokens may be cut before its "
        "document is complete");
  }

  // tokenizer_config.json: chat template and the bos/eos strings templates refer to.
  std::string template_source;
  if (fs::exists(dir / "tokenizer_config.json", ec)) {
    const std::string path = (dir / "tokenizer_config.json").string();
    KILN_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
    nlohmann::json tc = nlohmann::json::parse(text, nullptr, false);
    if (tc.is_discarded() || !tc.is_object()) {
      return Status::InvalidArgument(path + ": not a JSON object");
    }
    if (tc.contains("bos_token")) m->bos_token_ = TokenText(tc["bos_token"]);
    if (tc.contains("eos_token")) m->eos_token_ = TokenText(tc["eos_token"]);
    if (auto t = tc.find("chat_template"); t != tc.end()) {
      if (t->is_string()) {
        template_source = t->get<std::string>();
      } else if (t->is_array()) {  // named templates: use "default"
        for (const auto& entry : *t) {
          if (entry.value("name", "") == "default") template_source = entry.value("template", "");
        }
      }
    }
  }
  if (template_source.empty() && fs::exists(dir / "chat_template.jinja", ec)) {
    KILN_ASSIGN_OR_RETURN(template_source,
                          ReadFileToString((dir / "chat_template.jinja").string()));
  }
  if (!template_source.empty()) {
    auto parsed =
        jinja::Template::Parse(template_source, {.trim_blocks = true, .lstrip_blocks = true});
    if (!parsed.ok()) return parsed.status().WithContext(options.path + ": chat template");
    m->chat_template_ = std::move(parsed).value();
    // A template renders tools if a probe tool's name shows up in its output.
    ojson probe_messages = ojson::array({{{"role", "user"}, {"content", "x"}}});
    ojson probe_tools =
        ojson::array({{{"type", "function"},
                       {"function",
                        {{"name", "kiln_probe_tool_7f3a"},
                         {"description", "probe"},
                         {"parameters", {{"type", "object"}, {"properties", ojson::object()}}}}}}});
    auto rendered = m->RenderChat(probe_messages, &probe_tools, true, false);
    m->template_renders_tools_ =
        rendered.ok() && rendered->find("kiln_probe_tool_7f3a") != std::string::npos;
  } else {
    LogWarning(options.path + ": no chat template; /v1/chat/completions is unavailable");
  }

  KILN_ASSIGN_OR_RETURN(m->generation_defaults_,
                        LoadGenerationDefaults(options.path, options.generation_config));
  {
    const GenerationDefaults& d = m->generation_defaults_;
    std::string shown;
    for (const auto& [key, value] : d.applied.items()) {
      shown += (shown.empty() ? "" : ", ") + key + "=" + value["value"].dump();
    }
    LogInfo("sampling defaults for requests that leave them out: " +
            (shown.empty() ? std::string("temperature=1, top_p=1 (built-in)") : shown) + "; from " +
            d.source);
  }

  onnx::GenaiExecutorOptions eo;
  eo.max_model_len = options.max_model_len;
  eo.max_num_seqs = options.max_num_seqs;
  eo.device = options.device;
  eo.intra_op_threads = options.threads;
  KILN_ASSIGN_OR_RETURN(auto executor, onnx::GenaiExecutor::Load(options.path, eo));
  m->max_model_len_ = executor->max_model_len();
  m->eos_ids_ = executor->config().eos_token_ids;
  if (m->eos_ids_.empty() && m->tokenizer_.eos_id()) m->eos_ids_.push_back(*m->tokenizer_.eos_id());
  LogInfo("loaded " + options.path + " (onnx-genai on " + executor->device() + "): context " +
          std::to_string(m->max_model_len_) + " tokens, " + std::to_string(options.max_num_seqs) +
          " sequences, KV cache " + std::to_string(executor->kv_cache_bytes() >> 20) +
          " MiB reserved");
  engine::EngineConfig ec_config;
  ec_config.max_model_len = m->max_model_len_;
  ec_config.eos_token_ids = m->eos_ids_;
  ec_config.scheduler.max_num_seqs = options.max_num_seqs;
  ec_config.max_waiting_requests = options.max_queued_requests;
  ec_config.enable_prefix_caching = options.enable_prefix_caching;
  ec_config.scheduler.max_num_batched_tokens = std::max<int64_t>(options.max_num_batched_tokens, 1);
  m->engine_ = std::make_unique<engine::Engine>(ec_config, std::move(executor));
  m->engine_->Start();
  return m;
}

Result<std::string> ServedModel::RenderChat(const ojson& messages, const ojson* tools,
                                            bool add_generation_prompt,
                                            bool continue_final_message) const {
  if (!chat_template_) {
    return Status::InvalidArgument("this model has no chat template; use /v1/completions");
  }
  ojson context = {{"messages", messages},
                   {"add_generation_prompt", add_generation_prompt && !continue_final_message},
                   {"bos_token", bos_token_},
                   {"eos_token", eos_token_}};
  if (tools != nullptr && !tools->empty()) context["tools"] = *tools;
  KILN_ASSIGN_OR_RETURN(std::string prompt, chat_template_->Render(context));
  if (continue_final_message) {
    // Continue the last assistant message: drop what the template closed it with.
    if (!messages.empty() && messages.back().contains("content") &&
        messages.back()["content"].is_string()) {
      const std::string last = messages.back()["content"].get<std::string>();
      size_t pos = prompt.rfind(last);
      if (pos != std::string::npos) prompt.resize(pos + last.size());
    }
  }
  return prompt;
}

}  // namespace kiln::server
