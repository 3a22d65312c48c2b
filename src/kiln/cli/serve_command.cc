#include "kiln/cli/serve_command.h"

#include <pthread.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "kiln/base/log.h"
#include "kiln/cli/catalog_command.h"
#include "kiln/cli/exit_codes.h"
#include "kiln/predict/image_input.h"
#include "kiln/predict/predictive_model.h"
#include "kiln/server/openai_server.h"
#include "kiln/server/predict_server.h"

namespace kiln::cli {
namespace {

struct ServeArgs {
  server::ModelOptions model;
  // Every model to serve: --model flags, then positional arguments (model.path is the first).
  std::vector<std::string> models;
  std::vector<std::string> extra_models;  // positional
  // Loading on first request.
  std::string models_dir;
  int max_loaded_models = 0;
  double idle_unload_seconds = 0;
  std::string host = "127.0.0.1";
  uint16_t port = 8080;
  std::string api_key;
  int io_threads = 2;
  double shutdown_timeout = 30.0;
  int64_t max_seqs_per_request = 256;
  std::string workload = "auto";
  int64_t max_batch_size = 32;
  double max_batch_delay_ms = 2.0;
  // Image preprocessing flags, over the model's preprocess.json; empty: not given.
  std::string image_mean, image_std, image_scale, image_resize, image_channel_order, image_size;
  int64_t max_image_pixels = 0;
};

// Numbers separated by commas or x ("0.5,0.5,0.5", "224x224") as a JSON array; nullopt when one
// is not a number.
std::optional<nlohmann::json> NumberList(const std::string& text) {
  nlohmann::json list = nlohmann::json::array();
  size_t at = 0;
  while (at <= text.size()) {
    size_t end = text.find_first_of(",x", at);
    if (end == std::string::npos) end = text.size();
    const std::string part = text.substr(at, end - at);
    char* stop = nullptr;
    const double v = std::strtod(part.c_str(), &stop);
    if (part.empty() || *stop != '\0') return std::nullopt;
    if (v == static_cast<int64_t>(v) && part.find('.') == std::string::npos) {
      list.push_back(static_cast<int64_t>(v));
    } else {
      list.push_back(v);
    }
    at = end + 1;
  }
  return list;
}

// The image preprocessing: the defaults, then `<model>.preprocess.json` or preprocess.json beside
// the model file, then the flags.
Result<predict::ImagePreprocess> ImagePreprocessFor(const ServeArgs& args,
                                                    const std::string& model_file) {
  namespace fs = std::filesystem;
  predict::ImagePreprocess p;
  const fs::path file(model_file);
  for (const fs::path& candidate : {fs::path(file).replace_extension(".preprocess.json"),
                                    file.parent_path() / "preprocess.json"}) {
    std::error_code ec;
    if (!fs::exists(candidate, ec)) continue;
    std::ifstream in(candidate);
    nlohmann::json config = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (config.is_discarded()) return Status::InvalidArgument(candidate.string() + " is not JSON");
    if (Status s = predict::ApplyPreprocessConfig(config, &p); !s.ok()) {
      return s.WithContext(candidate.string());
    }
    LogInfo("image preprocessing from " + candidate.string());
    break;
  }
  nlohmann::json flags = nlohmann::json::object();
  for (auto [flag, key, text] : {std::tuple{"--image-mean", "mean", &args.image_mean},
                                 std::tuple{"--image-std", "std", &args.image_std},
                                 std::tuple{"--image-size", "size", &args.image_size}}) {
    if (text->empty()) continue;
    std::optional<nlohmann::json> list = NumberList(*text);
    if (!list)
      return Status::InvalidArgument(std::string(flag) + ": '" + *text +
                                     "' is not a list of numbers");
    flags[key] = *list;
  }
  if (!args.image_scale.empty()) {
    std::optional<nlohmann::json> list = NumberList(args.image_scale);
    if (!list || list->size() != 1) {
      return Status::InvalidArgument("--image-scale: '" + args.image_scale + "' is not a number");
    }
    flags["scale"] = (*list)[0];
  }
  if (!args.image_resize.empty()) flags["resize"] = args.image_resize;
  if (!args.image_channel_order.empty()) flags["channel_order"] = args.image_channel_order;
  if (args.max_image_pixels > 0) flags["max_pixels"] = args.max_image_pixels;
  if (Status s = predict::ApplyPreprocessConfig(flags, &p); !s.ok()) {
    return s.WithContext("image preprocessing flags");
  }
  return p;
}

// A single .onnx file, or a folder with .onnx files and neither a GenAI nor a Hugging Face
// config, is a predictive model.
bool LooksPredictive(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::path(path).extension() == ".onnx") return true;
  if (!fs::is_directory(path, ec)) return false;
  if (fs::exists(fs::path(path) / "genai_config.json", ec) ||
      fs::exists(fs::path(path) / "config.json", ec)) {
    return false;
  }
  for (const auto& entry : fs::directory_iterator(path, ec)) {
    if (entry.path().extension() == ".onnx") return true;
  }
  return false;
}

void BlockSignals(sigset_t* signals) {
  // Signals are taken by sigwait, so every thread starts with them blocked.
  sigemptyset(signals);
  sigaddset(signals, SIGTERM);
  sigaddset(signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
}

server::HttpServerOptions HttpOptions(const ServeArgs& args) {
  server::HttpServerOptions http;
  http.host = args.host;
  http.port = args.port;
  http.io_threads = args.io_threads;
  return http;
}

std::string ApiKey(const ServeArgs& args) {
  if (!args.api_key.empty()) return args.api_key;
  const char* env = std::getenv("KILN_API_KEY");
  return env ? env : "";
}

// Waits for SIGTERM or SIGINT, then lets `shutdown` finish requests in flight.
template <typename Shutdown>
int WaitAndStop(const ServeArgs& args, sigset_t* signals, Shutdown shutdown) {
  int sig = 0;
  sigwait(signals, &sig);
  LogInfo(std::string("received ") + (sig == SIGTERM ? "SIGTERM" : "SIGINT") +
          ": no new connections; letting requests in flight finish");
  auto deadline = std::chrono::milliseconds(static_cast<int64_t>(args.shutdown_timeout * 1000));
  if (!shutdown(deadline)) {
    // A supervisor (or a rolling update) should know that replies were cut off.
    LogError("stopped at the deadline: requests still running were cut off");
    return 1;
  }
  LogInfo("stopped");
  return 0;
}

int RunPredictive(const ServeArgs& args) {
  sigset_t signals;
  BlockSignals(&signals);
  server::PredictServerOptions options;
  options.http = HttpOptions(args);
  options.api_key = ApiKey(args);
  options.max_queued_requests = args.model.max_queued_requests;
  options.max_batch_size = args.max_batch_size;
  options.max_batch_delay_us = static_cast<int64_t>(args.max_batch_delay_ms * 1000);
  server::PredictServer srv(options);
  if (Status s = srv.Start(); !s.ok()) {
    LogError(s.message());
    return 1;
  }
  LogInfo("listening on http://" + args.host + ":" + std::to_string(srv.port()) +
          " (/ready answers 503 until the model is loaded)");
  predict::PredictiveOptions popts;
  popts.threads = args.model.threads;
  popts.device = args.model.device;
  auto model = predict::PredictiveModel::Load(args.model.path, popts);
  if (!model.ok()) {
    LogError(model.status().message());
    srv.Shutdown(std::chrono::milliseconds(0));
    return 1;
  }
  Result<predict::ImagePreprocess> image = ImagePreprocessFor(args, (*model)->file());
  if (!image.ok()) {
    LogError(image.status().message());
    srv.Shutdown(std::chrono::milliseconds(0));
    return 1;
  }
  srv.SetImagePreprocess(image.value());
  std::string id = args.model.served_model_name;
  if (id.empty()) id = std::filesystem::path((*model)->file()).stem().string();
  srv.SetModel(std::move(model).value(), id);
  LogInfo("ready: serving predictive model '" + id + "' at http://" + args.host + ":" +
          std::to_string(srv.port()) + "/v1/predict");
  return WaitAndStop(args, &signals, [&](auto deadline) { return srv.Shutdown(deadline); });
}

// A --model that is not a path names a catalog model (alias or id): its files in the model store
// and the runtime its framework decides, unless --runtime says otherwise.
Result<ServeArgs> ResolveCatalogModel(ServeArgs args) {
  std::error_code ec;
  if (std::filesystem::exists(args.model.path, ec) ||
      std::filesystem::path(args.model.path).extension() == ".onnx") {
    return args;
  }
  Result<ResolvedModel> resolved = ResolveModel(args.model.path, args.model.device);
  if (!resolved.ok()) return resolved.status();
  const catalog::Entry& e = resolved->entry;
  const bool by_uri = IsSourceUri(args.model.path);  // no entry: the files decide the runtime
  const std::string runtime = by_uri ? args.model.runtime : e.Runtime();
  if (!by_uri && runtime == "predictive") {
    args.workload = "predictive";
  } else if (!by_uri && args.model.runtime == "auto") {
    args.model.runtime = runtime;
  } else if (!by_uri && args.model.runtime != runtime) {
    return Status::InvalidArgument("'" + args.model.path + "' is " + e.id + ", which the " +
                                   runtime + " runtime serves (framework " +
                                   (e.framework == "onnx" ? "ONNX" : "vllm") +
                                   "); --runtime asked for " + args.model.runtime);
  }
  Result<std::string> files =
      EnsureModelFiles(args.model.path, &resolved.value(), TerminalPullOptions());
  if (!files.ok()) return files.status();
  LogInfo("'" + args.model.path + "' is " + e.id + " (" + runtime + "): " + resolved->path);
  if (args.model.served_model_name.empty()) args.model.served_model_name = e.alias;
  args.model.path = resolved->path;
  return args;
}

// A --model of the form NAME=MODEL serves MODEL under NAME (NAME holds no '/').
std::pair<std::string, std::string> SplitName(const std::string& spec) {
  const size_t eq = spec.find('=');
  if (eq == std::string::npos || eq == 0 || spec.find('/') < eq || spec.find(':') < eq) {
    return {"", spec};
  }
  return {spec.substr(0, eq), spec.substr(eq + 1)};
}

bool IsPredictive(const ServeArgs& a) {
  return a.workload == "predictive" || (a.workload == "auto" && LooksPredictive(a.model.path));
}

// Loads one resolved model, generative or predictive, under its served name (a predictive
// model's default: its file's stem).
Result<server::LoadedModel> LoadModel(const ServeArgs& a) {
  server::LoadedModel loaded;
  loaded.threads = a.model.threads;
  if (IsPredictive(a)) {
    predict::PredictiveOptions popts;
    popts.threads = a.model.threads;
    popts.device = a.model.device;
    auto model = predict::PredictiveModel::Load(a.model.path, popts);
    if (!model.ok()) return model.status();
    Result<predict::ImagePreprocess> image = ImagePreprocessFor(a, (*model)->file());
    if (!image.ok()) return image.status();
    server::PredictServerOptions p;
    p.max_queued_requests = a.model.max_queued_requests;
    p.max_batch_size = a.max_batch_size;
    p.max_batch_delay_us = static_cast<int64_t>(a.max_batch_delay_ms * 1000);
    p.image = image.value();
    std::string id = a.model.served_model_name;
    if (id.empty()) id = std::filesystem::path((*model)->file()).stem().string();
    loaded.predictive = std::make_unique<server::PredictService>(p);
    loaded.predictive->SetModel(std::move(model).value(), id);
    return loaded;
  }
  auto model = server::ServedModel::Load(a.model);
  if (!model.ok()) return model.status();
  loaded.generative = std::move(model).value();
  return loaded;
}

// What --models-dir (or the model store) holds under `name`: a folder, NAME.gguf or NAME.onnx in
// the folder, else a catalog name whose files are already in the store (a request never starts a
// download). NotFound otherwise.
Result<std::string> OnDemandSpec(const ServeArgs& args, const std::string& name) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const bool plain = !name.empty() && name.find('/') == std::string::npos && name != "." &&
                     name != ".." && name.find('\\') == std::string::npos;
  if (plain && !args.models_dir.empty()) {
    for (const std::string& candidate : {name, name + ".gguf", name + ".onnx"}) {
      const fs::path path = fs::path(args.models_dir) / candidate;
      if (fs::exists(path, ec)) return path.string();
    }
  }
  if (!IsSourceUri(name)) {
    Result<ResolvedModel> resolved = ResolveModel(name, args.model.device);
    if (resolved.ok() && !resolved->path.empty()) return name;
  }
  return Status::NotFound("no model '" + name + "' in " +
                          (args.models_dir.empty() ? std::string("the model store")
                                                   : args.models_dir + " or the model store"));
}

// Loads a model a request names (kiln serve --models-dir) under that name.
Result<server::LoadedModel> LoadOnDemand(const ServeArgs& given, const std::string& name) {
  Result<std::string> spec = OnDemandSpec(given, name);
  if (!spec.ok()) return spec.status();
  ServeArgs a = given;
  a.model.path = *spec;
  a.model.served_model_name = name;
  const int cores = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  a.model.threads = given.model.threads > 0 ? given.model.threads : cores;
  Result<ServeArgs> resolved = ResolveCatalogModel(a);
  if (!resolved.ok()) return resolved.status();
  a = std::move(resolved).value();
  a.model.served_model_name = name;
  return LoadModel(a);
}

// Several models in one server: each resolved, loaded with its share of the cores and added to
// the server's registry under its name; requests are routed by their `model` field.
int RunMany(const ServeArgs& given) {
  const int cores = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  const int n = static_cast<int>(given.models.size());
  if (!given.model.served_model_name.empty()) {
    LogError("--served-model-name names one model; with several, name each as --model NAME=MODEL");
    return kExitUsage;
  }
  std::vector<ServeArgs> each;
  for (const std::string& spec : given.models) {
    auto [name, model] = SplitName(spec);
    ServeArgs a = given;
    a.model.path = model;
    a.model.served_model_name = name;
    a.model.threads =
        given.model.threads > 0 ? given.model.threads : std::max(1, cores / std::max(1, n));
    Result<ServeArgs> resolved = ResolveCatalogModel(a);
    if (!resolved.ok()) {
      LogError(resolved.status().message());
      return ExitCodeFor(resolved.status());
    }
    each.push_back(std::move(resolved).value());
  }
  sigset_t signals;
  BlockSignals(&signals);
  server::OpenAiServerOptions options;
  options.http = HttpOptions(given);
  options.api_key = ApiKey(given);
  options.max_seqs_per_request = given.max_seqs_per_request;
  if (!given.models_dir.empty()) {
    options.loader = [given](const std::string& name) { return LoadOnDemand(given, name); };
  }
  options.max_loaded_models = given.max_loaded_models;
  options.idle_unload_seconds = given.idle_unload_seconds;
  server::OpenAiServer srv(options);
  if (Status s = srv.Start(); !s.ok()) {
    LogError(s.message());
    return kExitFailure;
  }
  LogInfo("listening on http://" + given.host + ":" + std::to_string(srv.port()) + " for " +
          std::to_string(n) + " models (/health answers 503 until all are loaded)");
  auto fail = [&](const Status& s) {
    LogError(s.message());
    srv.Shutdown(std::chrono::milliseconds(0));
    return kExitFailure;
  };
  for (const ServeArgs& a : each) {
    Result<server::LoadedModel> loaded = LoadModel(a);
    if (!loaded.ok()) return fail(loaded.status());
    const bool predictive = loaded->predictive != nullptr;
    const std::string id = predictive ? loaded->predictive->id() : loaded->generative->id();
    const std::string runtime = predictive ? "predictive" : loaded->generative->runtime();
    Status added = predictive
                       ? srv.AddPredictiveModel(std::move(loaded->predictive), loaded->threads)
                       : srv.AddModel(std::move(loaded->generative), loaded->threads);
    if (!added.ok()) return fail(added);
    LogInfo("loaded '" + id + "' (" + runtime + ", " + std::to_string(loaded->threads) +
            " threads)");
  }
  srv.SetReady();
  LogInfo("ready: serving " + std::to_string(n) + " models at http://" + given.host + ":" +
          std::to_string(srv.port()) + "/v1");
  return WaitAndStop(given, &signals, [&](auto deadline) { return srv.Shutdown(deadline); });
}

int RunServe(ServeArgs given) {
  if (given.models.empty() && given.models_dir.empty()) {
    LogError(
        "no model: give --model (a path, a catalog alias or id, or a source URI), or "
        "--models-dir to load models as requests name them");
    return kExitUsage;
  }
  if (given.models.size() != 1 || !given.models_dir.empty()) return RunMany(given);
  auto [name, spec] = SplitName(given.models[0]);
  given.model.path = spec;
  if (!name.empty()) given.model.served_model_name = name;
  Result<ServeArgs> resolved = ResolveCatalogModel(given);
  if (!resolved.ok()) {
    LogError(resolved.status().message());
    return ExitCodeFor(resolved.status());
  }
  const ServeArgs& args = resolved.value();
  if (IsPredictive(args)) return RunPredictive(args);
  sigset_t signals;
  BlockSignals(&signals);

  server::OpenAiServerOptions options;
  options.http = HttpOptions(args);
  options.api_key = ApiKey(args);
  options.max_seqs_per_request = args.max_seqs_per_request;
  server::OpenAiServer srv(options);
  if (Status s = srv.Start(); !s.ok()) {
    LogError(s.message());
    return 1;
  }
  LogInfo("listening on http://" + args.host + ":" + std::to_string(srv.port()) +
          " (/health answers 503 until the model is loaded)");
  auto model = server::ServedModel::Load(args.model);
  if (!model.ok()) {
    LogError(model.status().message());
    srv.Shutdown(std::chrono::milliseconds(0));
    return 1;
  }
  std::string id = (*model)->id();
  srv.SetModel(std::move(model).value());
  LogInfo("ready: serving '" + id + "' at http://" + args.host + ":" + std::to_string(srv.port()) +
          "/v1");

  return WaitAndStop(args, &signals, [&](auto deadline) { return srv.Shutdown(deadline); });
}

}  // namespace

Result<ModelToServe> ResolveModelToServe(const std::string& spec, server::ModelOptions base) {
  ServeArgs args;
  args.model = std::move(base);
  args.model.path = spec;
  Result<ServeArgs> resolved = ResolveCatalogModel(args);
  if (!resolved.ok()) return resolved.status();
  ModelToServe out;
  out.options = resolved->model;
  out.predictive = IsPredictive(*resolved);
  return out;
}

void RegisterServeCommand(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<ServeArgs>();
  CLI::App* cmd = app.add_subcommand("serve", "Serve a model over an OpenAI-compatible HTTP API");
  // A flag given twice takes its last value, so flags after scripts/run.sh's own override them.
  cmd->option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  cmd->add_option("--model,-m", args->models,
                  "Model: an ONNX Runtime GenAI folder, a Hugging Face folder or a GGUF file; a "
                  "classic ONNX model (a .onnx file, or a folder with one) for /v1/predict; a "
                  "catalog alias or id (kiln catalog list); or a source URI (hf://, https://, "
                  "oci://), pulled first. Give several (or list them after the flags) to serve "
                  "them together, routed by each request's `model`; NAME=MODEL names one")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  cmd->add_option("models", args->extra_models, "More models, as --model takes them");
  cmd->add_option("--models-dir", args->models_dir,
                  "Load a model a request names when it is not loaded: a folder, NAME.gguf or "
                  "NAME.onnx in this folder, or a catalog model already in the store");
  cmd->add_option("--max-loaded-models", args->max_loaded_models,
                  "With --models-dir: most models loaded at once; the one idle longest that was "
                  "loaded for a request makes room (0: no limit)")
      ->check(CLI::Range(0, 1000))
      ->capture_default_str();
  cmd->add_option("--idle-unload-seconds", args->idle_unload_seconds,
                  "Unload a model loaded for a request after this long without requests (0: "
                  "never)")
      ->check(CLI::Range(0.0, 1e9))
      ->capture_default_str();
  cmd->add_option("--workload", args->workload,
                  "auto (from the model's files), generative (the OpenAI API) or predictive "
                  "(/v1/predict for a classic ONNX model)")
      ->check(CLI::IsMember({"auto", "generative", "predictive"}))
      ->capture_default_str();
  cmd->add_option("--max-batch-size", args->max_batch_size,
                  "predictive: most requests one model run takes, where the model's batch "
                  "dimension is open (1: no batching)")
      ->check(CLI::Range(int64_t{1}, int64_t{4096}))
      ->capture_default_str();
  cmd->add_option("--max-batch-delay-ms", args->max_batch_delay_ms,
                  "predictive: how long a run may wait for more requests while they keep coming "
                  "(a lone client is never held back)")
      ->check(CLI::Range(0.0, 1000.0))
      ->capture_default_str();
  cmd->add_option("--image-mean", args->image_mean,
                  "predictive: per-channel mean subtracted from image inputs, R,G,B (default "
                  "ImageNet's 0.485,0.456,0.406; also 'mean' in <model>.preprocess.json)");
  cmd->add_option("--image-std", args->image_std,
                  "predictive: per-channel divisor of image inputs, R,G,B (default "
                  "0.229,0.224,0.225)");
  cmd->add_option("--image-scale", args->image_scale,
                  "predictive: factor applied to 0-255 pixels first (default 1/255)");
  cmd->add_option("--image-resize", args->image_resize,
                  "predictive: nearest, bilinear (default) or bicubic, as Pillow resizes");
  cmd->add_option("--image-channel-order", args->image_channel_order,
                  "predictive: rgb (default) or bgr, the model's channel order");
  cmd->add_option("--image-size", args->image_size,
                  "predictive: HxW for models whose input leaves height and width open "
                  "(default: the image's own)");
  cmd->add_option("--max-image-pixels", args->max_image_pixels,
                  "predictive: largest image accepted, in pixels (default 40000000)");
  cmd->add_option("--runtime", args->model.runtime,
                  "auto (from the model's files), onnx-genai (GenAI folders) or vllm (the native "
                  "paged engine: Hugging Face folders and GGUF files)")
      ->capture_default_str();
  cmd->add_option(
         "--kv-cache-dtype", args->model.kv_cache_dtype,
         "vllm runtime: KV cache element type: auto (the model's: bfloat16, or float32 for "
         "a float32 model on the CPU), float32, bfloat16 (half float32's bytes), fp8 or "
         "fp8_e4m3 (about a quarter, with a scale per token and head)")
      ->capture_default_str();
  cmd->add_option("--quantization,-q", args->model.quantization,
                  "vllm runtime: none (weights as stored) or int8 (bf16, f16 and f32 matrices "
                  "quantized per output channel at load)")
      ->check(CLI::IsMember({"none", "int8"}))
      ->capture_default_str();
  cmd->add_option("--kv-cache-memory", args->model.kv_cache_bytes,
                  "vllm runtime: bytes of KV cache (0: what the memory plan leaves, at most 4 GiB; "
                  "at least one max-model-len "
                  "sequence)")
      ->capture_default_str();
  cmd->add_option("--host", args->host, "Address to listen on")->capture_default_str();
  cmd->add_option("--port,-p", args->port, "Port to listen on")->capture_default_str();
  cmd->add_option("--api-key", args->api_key,
                  "Require this key (Authorization: Bearer, or api-key header); several, "
                  "comma-separated, are each accepted; also KILN_API_KEY");
  cmd->add_option("--served-model-name", args->model.served_model_name,
                  "Model id clients use (default: the folder's name)");
  cmd->add_option("--max-model-len", args->model.max_model_len,
                  "Longest prompt + completion in tokens (default: the model's, at most 4096)");
  cmd->add_option("--max-num-seqs", args->model.max_num_seqs,
                  "Sequences decoded together (KV cache slots)")
      ->capture_default_str();
  cmd->add_option("--max-num-batched-tokens", args->model.max_num_batched_tokens,
                  "Tokens computed per engine step")
      ->capture_default_str();
  cmd->add_flag("--enable-prefix-caching,!--no-enable-prefix-caching",
                args->model.enable_prefix_caching,
                "Reuse the KV cache of a prompt prefix computed before (default on)");
  cmd->add_option("--max-queued-requests", args->model.max_queued_requests,
                  "Requests that may wait for a sequence slot at once; more get 429 with "
                  "Retry-After (0: no limit)")
      ->capture_default_str();
  cmd->add_option("--max-seqs-per-request", args->max_seqs_per_request,
                  "Most sequences (prompts x n) one request may ask for; more get 400")
      ->capture_default_str();
  cmd->add_option("--device", args->model.device, "cpu or cuda")->capture_default_str();
  cmd->add_option("--threads", args->model.threads,
                  "Compute threads: ONNX Runtime's, or the vllm runtime's pool (0: one per core)")
      ->capture_default_str();
  cmd->add_option("--generation-config", args->model.generation_config,
                  "Sampling defaults for fields a request leaves out: 'auto' (the model's own: "
                  "a folder's generation_config.json and genai_config.json search, a GGUF's "
                  "general.sampling metadata), 'vllm' (built-in: temperature 1, top_p 1) or a "
                  "folder with a generation_config.json")
      ->capture_default_str();
  cmd->add_option("--override-generation-config", args->model.override_generation_config,
                  "A JSON object of sampling defaults over the model's, with "
                  "generation_config.json's names, e.g. '{\"temperature\": 0}'");
  cmd->add_option("--http-threads", args->io_threads, "Threads serving HTTP connections")
      ->capture_default_str();
  cmd->add_option("--shutdown-timeout", args->shutdown_timeout,
                  "Seconds to let requests finish after SIGTERM; any still running then are "
                  "cut off and the exit status is 1")
      ->capture_default_str();
  cmd->callback([args, exit_code] {
    ServeArgs a = *args;
    a.models.insert(a.models.end(), a.extra_models.begin(), a.extra_models.end());
    *exit_code = RunServe(std::move(a));
  });
}

}  // namespace kiln::cli
