#include "kiln/server/served_model.h"

#include <chrono>
#include <filesystem>
#include <optional>

#include "kiln/base/log.h"
#include "kiln/base/mapped_file.h"
#include "kiln/executors/native/native_executor.h"
#include "kiln/executors/onnx/genai_executor.h"
#include "kiln/formats/gguf.h"
#include "kiln/planner/planner.h"

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

planner::KvCacheDtype PlannerDtype(native::KvDtype dtype) {
  switch (dtype) {
    case native::KvDtype::kF32:
      return planner::KvCacheDtype::kF32;
    case native::KvDtype::kBF16:
      return planner::KvCacheDtype::kBF16;
    case native::KvDtype::kFp8E4M3:
      return planner::KvCacheDtype::kFp8E4M3;
  }
  return planner::KvCacheDtype::kF32;
}

// A plan's KV cache dtype (resolved: never auto) as the executor names it.
native::KvDtype NativeDtype(planner::KvCacheDtype dtype) {
  switch (dtype) {
    case planner::KvCacheDtype::kBF16:
      return native::KvDtype::kBF16;
    case planner::KvCacheDtype::kFp8E4M3:
      return native::KvDtype::kFp8E4M3;
    case planner::KvCacheDtype::kAuto:
    case planner::KvCacheDtype::kF32:
      break;
  }
  return native::KvDtype::kF32;
}

// The vllm runtime's sizes from the memory planner (`kiln plan` shows the same plan): the longest
// context that fits, and the KV cache the memory leaves, which --kv-cache-memory overrides. The
// planner's share of RAM for the CPU is half of it; the KV cache takes at most 4 GiB of that
// unless asked, as vLLM's CPU backend does by default, since a long-running server touches all
// of its cache in time. A model the planner cannot describe keeps the executor's own defaults.
// --kv-cache-dtype auto is the plan's choice (the model's own 16-bit type, f32 for an f32
// model on the CPU); without a plan, bf16 on a GPU and f32 on the CPU.
struct NativeSizes {
  int64_t max_model_len = 0;   // 0: the executor's default
  int64_t kv_cache_bytes = 0;  // 0: the executor's default
  native::KvDtype kv_dtype = native::KvDtype::kF32;
  std::optional<planner::Plan> plan;
};

// `device`: the CPU, or the GPU the vllm runtime runs on. `kv_dtype`: as asked, maybe auto.
Result<NativeSizes> PlanNativeRuntime(const ModelOptions& options, planner::KvCacheDtype kv_dtype,
                                      const planner::Device& device) {
  NativeSizes sizes;
  sizes.max_model_len = options.max_model_len;
  sizes.kv_cache_bytes = options.kv_cache_bytes;
  sizes.kv_dtype = kv_dtype != planner::KvCacheDtype::kAuto   ? NativeDtype(kv_dtype)
                   : device.kind == planner::DeviceKind::kGpu ? native::KvDtype::kBF16
                                                              : native::KvDtype::kF32;
  auto facts = planner::ReadModelFacts(options.path);
  if (!facts.ok()) {
    LogInfo("no memory plan for this model (" + facts.status().message() + "); KV cache " +
            (options.kv_cache_bytes > 0 ? "as asked" : "1 GiB") + ", " +
            native::KvDtypeName(sizes.kv_dtype));
    return sizes;
  }
  planner::Preferences prefs;
  if (options.max_model_len > 0) prefs.max_model_len = options.max_model_len;
  prefs.max_num_seqs = options.max_num_seqs;
  prefs.max_num_batched_tokens =
      std::max<int64_t>(options.max_num_batched_tokens, options.max_num_seqs);
  prefs.enable_prefix_caching = options.enable_prefix_caching;
  prefs.kv_cache_dtype = kv_dtype;
  prefs.quantization = options.quantization;
  KILN_ASSIGN_OR_RETURN(planner::Plan plan, planner::MakePlan(*facts, device, prefs));
  constexpr int64_t kDefaultKvCap = int64_t{4} << 30;
  sizes.max_model_len = plan.max_model_len;
  sizes.kv_dtype = NativeDtype(plan.kv_cache_dtype);
  if (options.kv_cache_bytes == 0) {
    // A GPU's cache takes all the room the plan leaves, as vLLM's does.
    sizes.kv_cache_bytes = device.kind == planner::DeviceKind::kCpu
                               ? std::min(plan.kv_cache_bytes, kDefaultKvCap)
                               : plan.kv_cache_bytes;
  }
  LogInfo("memory plan (kiln plan): weights " + std::to_string(plan.weight_bytes >> 20) +
          " MiB, activations " + std::to_string(plan.activation_bytes >> 20) +
          " MiB, KV cache room " + std::to_string(plan.kv_cache_bytes >> 20) + " MiB of a " +
          std::to_string(plan.budget_bytes >> 20) + " MiB budget (" +
          planner::KvCacheDtypeName(plan.kv_cache_dtype) + ", " +
          std::to_string(plan.kv_bytes_per_token) + " bytes a token); max_model_len " +
          std::to_string(plan.max_model_len));
  sizes.plan = std::move(plan);
  return sizes;
}

// A runtime's executor, loaded, with what the engine needs to know of it.
struct LoadedExecutor {
  std::unique_ptr<engine::Executor> executor;
  int64_t max_model_len = 0;
  std::vector<int32_t> eos_ids;
};

Result<LoadedExecutor> LoadOnnxGenai(const ModelOptions& options) {
  if (options.quantization != "none") {
    return Status::InvalidArgument("--quantization " + options.quantization +
                                   ": the onnx-genai runtime runs a folder's weights as built "
                                   "(kiln convert --precision int4 quantizes them); --quantization "
                                   "is the vllm runtime's");
  }
  onnx::GenaiExecutorOptions eo;
  eo.max_model_len = options.max_model_len;
  eo.max_num_seqs = options.max_num_seqs;
  eo.device = options.device;
  eo.intra_op_threads = options.threads;
  KILN_ASSIGN_OR_RETURN(auto genai, onnx::GenaiExecutor::Load(options.path, eo));
  LoadedExecutor out;
  out.max_model_len = genai->max_model_len();
  out.eos_ids = genai->config().eos_token_ids;
  LogInfo("loaded " + options.path + " (onnx-genai on " + genai->device() + "): context " +
          std::to_string(out.max_model_len) + " tokens, " + std::to_string(options.max_num_seqs) +
          " sequences, KV cache " + std::to_string(genai->kv_cache_bytes() >> 20) +
          " MiB reserved");
  out.executor = std::move(genai);
  return out;
}

// Two phases: plan, load the weights, then make the KV cache the plan leaves room for, in the
// bytes per token the executor states.
Result<LoadedExecutor> LoadNative(const ModelOptions& options) {
  std::string device = "cpu";
  planner::Device plan_device;
  Result<native::GpuInfo> gpu = Status::Unavailable("--device " + options.device);
  if (options.device == "cuda") gpu = native::DetectGpu();
  if (gpu.ok()) {
    device = "cuda";
    plan_device = {gpu->name, planner::DeviceKind::kGpu, gpu->memory_bytes};
  } else {
    if (options.device != "cpu") {
      // As the onnx-genai runtime does without a CUDA library: serve, on the CPU, and say so.
      LogWarning("--device " + options.device + ": no GPU the vllm runtime can use (" +
                 gpu.status().message() + "); running on the CPU");
    }
    KILN_ASSIGN_OR_RETURN(plan_device, planner::DeviceByName("cpu"));
  }
  planner::KvCacheDtype asked = planner::KvCacheDtype::kAuto;
  if (options.kv_cache_dtype != "auto") {
    Result<native::KvDtype> parsed = native::ParseKvDtype(options.kv_cache_dtype);
    if (!parsed.ok()) {
      return Status::InvalidArgument("--kv-cache-dtype '" + options.kv_cache_dtype +
                                     "': expected auto, float32, bfloat16, fp8 or fp8_e4m3");
    }
    asked = PlannerDtype(*parsed);
  }
  KILN_ASSIGN_OR_RETURN(NativeSizes sizes, PlanNativeRuntime(options, asked, plan_device));
  const native::KvDtype kv_dtype = sizes.kv_dtype;
  native::NativeExecutorOptions no;
  no.max_model_len = sizes.max_model_len;
  no.threads = options.threads;
  no.quantization = options.quantization;
  no.device = device;
  KILN_ASSIGN_OR_RETURN(auto native, native::NativeExecutor::Load(options.path, no));
  if (sizes.plan && native->kv_bytes_per_token(kv_dtype) != sizes.plan->kv_bytes_per_token) {
    LogWarning("the memory plan counted " + std::to_string(sizes.plan->kv_bytes_per_token) +
               " KV bytes a token, the executor needs " +
               std::to_string(native->kv_bytes_per_token(kv_dtype)) +
               "; the cache holds what its bytes hold");
  }
  KILN_RETURN_IF_ERROR(native->AllocateKvCache(kv_dtype, sizes.kv_cache_bytes));
  LoadedExecutor out;
  out.max_model_len = native->max_model_len();
  for (int64_t id : native->model().config().eos_token_ids) {
    out.eos_ids.push_back(static_cast<int32_t>(id));
  }
  const std::string where =
      native->on_gpu() ? "vllm on cuda"
                       : "vllm on cpu, " + std::string(native::cpu::IsaName(native->isa())) +
                             " kernels, " + std::to_string(native->threads()) + " threads";
  LogInfo("loaded " + options.path + " (" + where + "): weights " +
          native->model().weight_summary() + ", " +
          std::to_string(native->model().weight_bytes() >> 20) + " MiB; context " +
          std::to_string(out.max_model_len) + " tokens; KV cache " +
          std::to_string(native->kv_cache_bytes() >> 20) + " MiB " +
          native::KvDtypeName(native->kv_cache_dtype()) + " (" +
          std::to_string(native->kv_geometry().num_blocks) + " blocks of " +
          std::to_string(native->kv_geometry().block_size) + " tokens)");
  out.executor = std::move(native);
  return out;
}

}  // namespace

const char* RuntimeName(Runtime runtime) {
  return runtime == Runtime::kVllm ? "vllm" : "onnx-genai";
}

Result<Runtime> ChooseRuntime(const ModelOptions& options) {
  const fs::path path(options.path);
  const std::string& asked = options.runtime;
  if (asked != "auto" && asked != "onnx-genai" && asked != "vllm") {
    return Status::InvalidArgument("--runtime " + asked + ": expected auto, onnx-genai or vllm");
  }
  std::error_code ec;
  Runtime found = Runtime::kOnnxGenai;
  std::string what;
  if (fs::is_regular_file(path, ec)) {
    if (path.extension() != ".gguf") {
      return Status::InvalidArgument(options.path +
                                     ": a file that is not a .gguf; --model takes a GGUF file, "
                                     "a Hugging Face folder or an ONNX Runtime GenAI folder");
    }
    found = Runtime::kVllm;
    what = "a GGUF file";
  } else if (fs::exists(path / "genai_config.json", ec)) {
    found = Runtime::kOnnxGenai;
    what = "an ONNX Runtime GenAI folder";
  } else if (fs::exists(path / "config.json", ec)) {
    found = Runtime::kVllm;
    what = "a Hugging Face folder";
  } else if (fs::exists(path, ec)) {
    return Status::NotFound(options.path +
                            ": neither a GGUF file nor a folder with genai_config.json (ONNX "
                            "Runtime GenAI) or config.json (Hugging Face)");
  } else {
    return Status::NotFound(options.path + ": no such file or folder");
  }
  if (asked == "auto" || asked == RuntimeName(found)) return found;
  if (found == Runtime::kOnnxGenai) {
    return Status::InvalidArgument(options.path + " is " + what +
                                   ", which the onnx-genai runtime serves; the vllm runtime "
                                   "serves Hugging Face folders and GGUF files");
  }
  return Status::InvalidArgument(options.path + " is " + what +
                                 ", which the vllm runtime serves; the onnx-genai runtime needs "
                                 "an ONNX Runtime GenAI folder: run `kiln convert " +
                                 options.path + " <out>` first");
}

Result<std::unique_ptr<ServedModel>> ServedModel::Load(const ModelOptions& options) {
  KILN_ASSIGN_OR_RETURN(Runtime runtime, ChooseRuntime(options));
  const fs::path path(options.path);
  std::error_code ec;
  const bool is_gguf = fs::is_regular_file(path, ec);
  // The folder that holds the tokenizer and configs (a GGUF file holds its own).
  const fs::path dir = is_gguf ? path.parent_path() : path;
  std::unique_ptr<ServedModel> m(new ServedModel());
  m->runtime_ = RuntimeName(runtime);
  m->id_ = options.served_model_name;
  if (m->id_.empty()) {
    m->id_ = is_gguf ? path.stem().string() : path.filename().string();
    if (m->id_.empty()) m->id_ = fs::absolute(path).parent_path().filename().string();
  }
  m->created_ = std::chrono::duration_cast<std::chrono::seconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();

  std::string template_source;
  std::optional<gguf::GgufFile> gguf_file;
  if (is_gguf) {
    KILN_ASSIGN_OR_RETURN(gguf_file, gguf::GgufFile::Open(options.path));
    KILN_ASSIGN_OR_RETURN(m->tokenizer_, text::Tokenizer::FromGguf(*gguf_file));
    template_source = gguf_file->GetString("tokenizer.chat_template").value_or("");
    if (auto bos = m->tokenizer_.bos_id(); bos && m->tokenizer_.IdToToken(*bos)) {
      m->bos_token_ = *m->tokenizer_.IdToToken(*bos);
    }
    if (auto eos = m->tokenizer_.eos_id(); eos && m->tokenizer_.IdToToken(*eos)) {
      m->eos_token_ = *m->tokenizer_.IdToToken(*eos);
    }
  } else {
    KILN_ASSIGN_OR_RETURN(m->tokenizer_,
                          text::Tokenizer::FromJsonFile((dir / "tokenizer.json").string()));
  }
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
  if (!is_gguf && fs::exists(dir / "tokenizer_config.json", ec)) {
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
  if (!is_gguf && template_source.empty() && fs::exists(dir / "chat_template.jinja", ec)) {
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

  GenerationSources sources;
  sources.model_dir = is_gguf ? "" : dir.string();
  sources.mode = options.generation_config;
  if (gguf_file) sources.gguf_fields = GgufSamplingFields(*gguf_file);
  sources.override_json = options.override_generation_config;
  KILN_ASSIGN_OR_RETURN(m->generation_defaults_, LoadGenerationDefaults(sources));
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

  KILN_ASSIGN_OR_RETURN(LoadedExecutor loaded, runtime == Runtime::kOnnxGenai
                                                   ? LoadOnnxGenai(options)
                                                   : LoadNative(options));
  std::unique_ptr<engine::Executor> executor = std::move(loaded.executor);
  m->max_model_len_ = loaded.max_model_len;
  m->eos_ids_ = std::move(loaded.eos_ids);
  if (m->eos_ids_.empty() && m->tokenizer_.eos_id()) m->eos_ids_.push_back(*m->tokenizer_.eos_id());
  engine::EngineConfig ec_config;
  ec_config.max_model_len = m->max_model_len_;
  ec_config.eos_token_ids = m->eos_ids_;
  ec_config.scheduler.max_num_seqs = options.max_num_seqs;
  ec_config.max_waiting_requests = options.max_queued_requests;
  ec_config.enable_prefix_caching = options.enable_prefix_caching;
  ec_config.scheduler.max_num_batched_tokens = std::max<int64_t>(options.max_num_batched_tokens, 1);
  m->engine_ = std::make_unique<engine::Engine>(ec_config, std::move(executor));
  if (options.enable_prefix_caching && !m->engine_->prefix_caching()) {
    LogWarning("prefix caching asked for, but this runtime cannot reuse a prefix: off");
  }
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
