#include "kiln/server/openai_server.h"

#include <algorithm>
#include <random>
#include <thread>

#include "kiln/base/log.h"
#include "kiln/server/constraints.h"
#include "kiln/server/generation_job.h"
#include "kiln/server/open_inference.h"
#include "kiln/server/openai_protocol.h"
#include "kiln/server/tool_calls.h"

extern const char kChatPage[];  // server/web/chat.html, embedded by the build
extern const std::size_t kChatPage_size;

namespace kiln::server {
namespace {

using json = nlohmann::ordered_json;
using ojson = nlohmann::ordered_json;

HttpResponse JsonResponse(int status, const ojson& body) {
  return {
      status, "application/json", body.dump(-1, ' ', false, ojson::error_handler_t::replace), {}};
}

HttpResponse Error(int status, std::string_view message, std::string_view param = {}) {
  const char* type = status == 401   ? "authentication_error"
                     : status == 404 ? "not_found_error"
                     : status == 429 ? "rate_limit_error"
                     : status >= 500 ? "server_error"
                                     : "invalid_request_error";
  ojson body = {{"error",
                 {{"message", std::string(message)},
                  {"type", type},
                  {"param", param.empty() ? ojson(nullptr) : ojson(std::string(param))},
                  {"code", status}}}};
  return JsonResponse(status, body);
}

// The answer to a request the engine would not queue: 429 with Retry-After when it is busy, 400
// when the request itself is wrong.
HttpResponse SubmitError(const Status& status) {
  if (status.code() == StatusCode::kUnavailable) {
    HttpResponse r = Error(429, status.message());
    r.headers.emplace_back("Retry-After", "1");
    return r;
  }
  return Error(400, status.message());
}

// Parses a request body as JSON; on failure says where and why.
std::optional<json> ParseBody(const HttpRequest& request, std::shared_ptr<Exchange>& exchange) {
  auto parsed = ParseJsonBody(request.body);
  if (auto* err = std::get_if<RequestError>(&parsed)) {
    exchange->Respond(Error(400, err->message, err->param));
    return std::nullopt;
  }
  return std::move(std::get<json>(parsed));
}

// The job settings every generation request shares.
JobSettings SettingsFor(JobKind kind, const GenerationOptions& o, const std::string& model_id);

// The sampling settings one prompt runs with: the request's, and the model's default max_tokens
// where the request names none, cut to the context left after the prompt.
engine::SamplingParams ForPrompt(const engine::SamplingParams& requested, const ServedModel& model,
                                 size_t prompt_tokens) {
  engine::SamplingParams p = requested;
  const auto& default_max = model.generation_defaults().max_tokens;
  const int64_t left = model.max_model_len() - static_cast<int64_t>(prompt_tokens);
  if (!p.max_tokens && default_max && left > 0) p.max_tokens = std::min(*default_max, left);
  return p;
}

std::string RandomSuffix() {
  static thread_local std::mt19937_64 rng(std::random_device{}());
  static const char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::string s;
  for (int i = 0; i < 24; ++i) s += kAlphabet[rng() % 36];
  return s;
}

JobSettings SettingsFor(JobKind kind, const GenerationOptions& o, const std::string& model_id) {
  JobSettings s;
  s.kind = kind;
  s.id = (kind == JobKind::kChat ? "chatcmpl-" : "cmpl-") + RandomSuffix();
  s.created = std::chrono::duration_cast<std::chrono::seconds>(
                  std::chrono::system_clock::now().time_since_epoch())
                  .count();
  s.model = model_id;
  s.stream = o.stream;
  s.include_usage = o.include_usage;
  s.n = o.sampling.n;
  if (o.logprobs) s.logprobs = o.sampling.logprobs.value_or(0);
  s.skip_special_tokens = o.skip_special_tokens;
  s.tokens_as_ids = o.return_tokens_as_token_ids;
  s.stop = o.sampling.stop;
  s.include_stop_str_in_output = o.sampling.include_stop_str_in_output;
  s.prompt_logprobs_field = o.prompt_logprobs;
  return s;
}

}  // namespace

OpenAiServer::OpenAiServer(OpenAiServerOptions options) : options_(std::move(options)) {
  http_ = std::make_unique<HttpServer>(
      options_.http, [this](const HttpRequest& r, std::shared_ptr<Exchange> ex) { Handle(r, ex); });
}

OpenAiServer::~OpenAiServer() {
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(loading_mu_);
    stopping_ = true;
    threads.swap(load_threads_);
  }
  idle_cv_.notify_all();
  if (idle_thread_.joinable()) idle_thread_.join();
  for (std::thread& t : threads) t.join();
  if (http_) http_->Stop();
  registry_.Clear();
}

Status OpenAiServer::Start() {
  if (options_.idle_unload_seconds > 0) idle_thread_ = std::thread([this] { IdleLoop(); });
  return http_->Start();
}

Status OpenAiServer::AddModel(std::unique_ptr<ServedModel> model, int threads, bool on_demand) {
  auto r = std::make_unique<RegisteredModel>();
  r->on_demand = on_demand;
  r->name = model->id();
  r->runtime = model->runtime();
  r->threads = threads;
  r->loaded_at = model->created();
  r->metrics = std::make_unique<Metrics>(model->id());
  r->generative = std::move(model);
  return registry_.Add(std::move(r));
}

Status OpenAiServer::AddPredictiveModel(std::unique_ptr<PredictService> service, int threads,
                                        bool on_demand) {
  auto r = std::make_unique<RegisteredModel>();
  r->on_demand = on_demand;
  r->name = service->id();
  r->runtime = "predictive";
  r->threads = threads;
  r->loaded_at = std::chrono::duration_cast<std::chrono::seconds>(
                     std::chrono::system_clock::now().time_since_epoch())
                     .count();
  r->predictive = std::move(service);
  return registry_.Add(std::move(r));
}

void OpenAiServer::SetModel(std::unique_ptr<ServedModel> model) {
  if (Status s = AddModel(std::move(model)); !s.ok()) LogError(s.message());
  SetReady();
}

bool OpenAiServer::Shutdown(std::chrono::milliseconds deadline) {
  http_->StopAccepting();
  bool idle = http_->WaitForIdle(deadline);
  registry_.ForEach([](RegisteredModel& m, const ModelRegistry::Usage&) {
    if (m.generative) m.generative->engine().Stop();
  });
  http_->Stop();
  return idle;
}

void OpenAiServer::Handle(const HttpRequest& request, std::shared_ptr<Exchange> exchange) {
  const std::string& path = request.path;
  auto method_is = [&](const char* m) {
    if (request.method == m) return true;
    exchange->Respond(Error(405, "use " + std::string(m) + " for " + path));
    return false;
  };
  if (path == "/health" || path == "/metrics" || path == "/v2/health/live" ||
      path == "/v2/health/ready") {
    if (!method_is("GET")) return;
    if (path == "/metrics") {
      exchange->Respond({200, "text/plain; version=0.0.4; charset=utf-8", RenderMetrics(), {}});
    } else if (path == "/v2/health/live") {
      exchange->Respond(JsonResponse(200, {{"live", true}}));
    } else if (path == "/v2/health/ready") {
      exchange->Respond(JsonResponse(ready_ ? 200 : 503, {{"ready", ready_.load()}}));
    } else if (!ready_) {
      exchange->Respond(Error(503, "the model is loading"));
    } else {
      exchange->Respond({200, "application/json", "{}", {}});
    }
    return;
  }
  // The Open Inference Protocol's routes exist where a predictive model is loaded.
  const bool v2_route = (path == "/v2" || path.rfind("/v2/", 0) == 0) && registry_.HasPredictive();
  if (path == "/" || path == "/index.html") {
    // The chat page: static, so open to all; its API calls carry the key the user gives it.
    if (method_is("GET")) {
      exchange->Respond({200,
                         "text/html; charset=utf-8",
                         std::string(kChatPage, kChatPage_size),
                         {{"Cache-Control", "no-cache"},
                          {"Content-Security-Policy",
                           "default-src 'self'; script-src 'unsafe-inline'; style-src "
                           "'unsafe-inline'; connect-src 'self'"}}});
    }
    return;
  }
  const bool api_route = path.rfind("/v1/", 0) == 0 || path == "/tokenize" ||
                         path == "/detokenize" || v2_route || path.rfind("/openai/", 0) == 0;
  if (!api_route) {
    exchange->Respond(Error(404, "no route for " + request.method + " " + path));
    return;
  }
  if (!HasApiKey(request, options_.api_key)) {
    exchange->Respond(Error(401,
                            "invalid or missing API key: send it as 'Authorization: Bearer "
                            "<key>' or in an 'api-key' header"));
    return;
  }
  if (!ready_ && registry_.Names().empty()) {
    exchange->Respond(Error(503, "the model is loading"));
    return;
  }
  if (path == "/v1/models" || path.rfind("/v1/models/", 0) == 0) {
    if (method_is("GET")) HandleModels(request, exchange);
  } else if (path == "/v1/predict" || path == "/v1/model" || v2_route) {
    HandlePredictive(request, exchange);
  } else if (path == "/openai/loadedmodels") {
    if (method_is("GET")) exchange->Respond(JsonResponse(200, registry_.Names()));
  } else if (path.rfind("/openai/unload/", 0) == 0) {
    if (request.method != "GET" && request.method != "POST") {
      exchange->Respond(Error(405, "use GET or POST for " + path));
      return;
    }
    HandleUnload(path.substr(std::string("/openai/unload/").size()), exchange);
  } else if (path == "/v1/chat/completions" || path == "/v1/completions" || path == "/tokenize" ||
             path == "/detokenize") {
    if (!method_is("POST")) return;
    auto body = ParseBody(request, exchange);
    if (!body) return;
    Lease lease = GenerativeFor(request, *body, exchange);
    if (!lease) return;
    if (path == "/v1/chat/completions") {
      HandleChat(std::move(*body), std::move(lease), exchange);
    } else if (path == "/v1/completions") {
      HandleCompletion(std::move(*body), std::move(lease), exchange);
    } else if (path == "/tokenize") {
      HandleTokenize(std::move(*body), std::move(lease), exchange);
    } else {
      HandleDetokenize(std::move(*body), std::move(lease), exchange);
    }
  } else {
    exchange->Respond(Error(404, "no route for " + request.method + " " + path));
  }
}

namespace {

// "'a', 'b'": the names a 404 lists.
std::string Listing(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "'" : ", '") + n + "'";
  return out.empty() ? "no model" : out;
}

// A predictive route's error: Foundry's {"detail"} beside the error object.
HttpResponse PredictError(int status, const std::string& message) {
  HttpResponse r = Error(status, message);
  ojson body = ojson::parse(r.body);
  body["detail"] = message;
  r.body = body.dump();
  return r;
}

}  // namespace

OpenAiServer::Lease OpenAiServer::GenerativeFor(const HttpRequest& request, const ojson& body,
                                                std::shared_ptr<Exchange> exchange_ptr) {
  Exchange& exchange = *exchange_ptr;
  std::string name;
  if (auto it = body.find("model"); it != body.end() && it->is_string()) name = *it;
  Lease lease = name.empty() ? registry_.Only(false) : registry_.Acquire(name);
  if (lease && lease->model().generative) return lease;
  if (!lease && !name.empty() && LoadOnDemand(name, request, exchange_ptr)) return nullptr;
  if (lease) {
    exchange.Respond(Error(400,
                           "'" + name +
                               "' is a predictive model: send its requests to "
                               "/v1/predict?model=" +
                               name,
                           "model"));
  } else if (name.empty()) {
    exchange.Respond(Error(
        400, "'model' is required: this server serves " + Listing(registry_.Names()), "model"));
  } else {
    exchange.Respond(Error(
        404,
        "the model '" + name + "' does not exist; this server serves " + Listing(registry_.Names()),
        "model"));
  }
  return nullptr;
}

void OpenAiServer::HandleUnload(const std::string& name, std::shared_ptr<Exchange> exchange) {
  // Unloading waits for the model's requests to finish: off the I/O threads.
  std::thread([this, name, exchange] {
    const auto start = std::chrono::steady_clock::now();
    Status s = registry_.Unload(name, std::chrono::minutes(10));
    if (!s.ok()) {
      exchange->Respond(Error(
          s.code() == StatusCode::kNotFound ? 404 : 409,
          s.message() +
              (s.code() == StatusCode::kNotFound ? "; loaded: " + Listing(registry_.Names()) : ""),
          "model"));
      return;
    }
    LogInfo("unloaded '" + name + "'");
    const double waited =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    exchange->Respond(JsonResponse(200, {{"unloaded", name}, {"waited_seconds", waited}}));
  }).detach();
}

bool OpenAiServer::LoadOnDemand(const std::string& name, const HttpRequest& request,
                                std::shared_ptr<Exchange> exchange) {
  if (!options_.loader) return false;
  std::lock_guard lock(loading_mu_);
  if (stopping_) return false;
  auto [it, first] = loading_.try_emplace(name);
  it->second.emplace_back(request, std::move(exchange));
  if (first) load_threads_.emplace_back([this, name] { LoadAndDispatch(name); });
  return true;
}

void OpenAiServer::LoadAndDispatch(const std::string& name) {
  Status status;
  // Room first: the on-demand model idle longest goes.
  while (options_.max_loaded_models > 0 &&
         registry_.size() >= static_cast<size_t>(options_.max_loaded_models)) {
    const std::string victim = registry_.LeastRecentlyUsedIdle();
    if (victim.empty() || !registry_.Unload(victim, std::chrono::milliseconds(0)).ok()) {
      status = Status::Unavailable("all " + std::to_string(options_.max_loaded_models) +
                                   " loaded models are busy; '" + name +
                                   "' cannot be loaded now (--max-loaded-models)");
      break;
    }
    LogInfo("unloaded '" + victim + "' to make room for '" + name + "'");
  }
  if (status.ok()) {
    const auto start = std::chrono::steady_clock::now();
    Result<LoadedModel> loaded = options_.loader(name);
    if (!loaded.ok()) {
      status = loaded.status();
    } else if (loaded->generative) {
      status = AddModel(std::move(loaded->generative), loaded->threads, /*on_demand=*/true);
    } else {
      status = AddPredictiveModel(std::move(loaded->predictive), loaded->threads, true);
    }
    if (status.ok()) {
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      LogInfo("loaded '" + name + "' for a request (" + std::to_string(seconds) + " s)");
    }
  }
  std::vector<std::pair<HttpRequest, std::shared_ptr<Exchange>>> waiting;
  {
    std::lock_guard lock(loading_mu_);
    waiting = std::move(loading_[name]);
    loading_.erase(name);
  }
  for (auto& [request, exchange] : waiting) {
    if (status.ok()) {
      Handle(request, exchange);  // now it finds the model
      continue;
    }
    const int code = status.code() == StatusCode::kNotFound      ? 404
                     : status.code() == StatusCode::kUnavailable ? 503
                                                                 : 500;
    std::string message = status.message();
    if (code == 404) message += "; this server serves " + Listing(registry_.Names());
    HttpResponse r = request.path.rfind("/v2/", 0) == 0 ? oip::Error(code, message)
                     : request.path == "/v1/predict"    ? PredictError(code, message)
                                                        : Error(code, message, "model");
    if (code == 503) r.headers.emplace_back("Retry-After", "1");
    exchange->Respond(std::move(r));
  }
}

void OpenAiServer::IdleLoop() {
  const auto period = std::chrono::milliseconds(
      std::clamp<int64_t>(static_cast<int64_t>(options_.idle_unload_seconds * 250), 10, 1000));
  std::unique_lock lock(loading_mu_);
  while (!stopping_) {
    idle_cv_.wait_for(lock, period, [&] { return stopping_; });
    if (stopping_) break;
    lock.unlock();
    for (const std::string& name : registry_.IdleFor(options_.idle_unload_seconds)) {
      if (registry_.Unload(name, std::chrono::milliseconds(0)).ok()) {
        LogInfo("unloaded '" + name + "': idle for " +
                std::to_string(options_.idle_unload_seconds) + " s");
      }
    }
    lock.lock();
  }
}

void OpenAiServer::HandlePredictive(const HttpRequest& request,
                                    std::shared_ptr<Exchange> exchange) {
  const std::string& path = request.path;
  if (path == "/v2") {
    if (request.method != "GET") {
      exchange->Respond(oip::Error(405, "use GET for /v2"));
      return;
    }
    exchange->Respond(JsonResponse(
        200, {{"name", "kiln"}, {"version", "1"}, {"extensions", {"binary_tensor_data"}}}));
    return;
  }
  if (path.rfind("/v2/", 0) == 0) {
    std::string name, rest;
    if (!oip::SplitModelPath(path, &name, &rest)) {
      exchange->Respond(oip::Error(404, "no route for " + request.method + " " + path));
      return;
    }
    Lease lease = registry_.Acquire(name);
    if (!lease && LoadOnDemand(name, request, exchange)) return;
    if (!lease || !lease->model().predictive) {
      exchange->Respond(oip::Error(404, "no predictive model '" + name + "'; this server serves " +
                                            Listing(registry_.Names())));
      return;
    }
    PredictService& service = *lease->model().predictive;
    service.HandleV2Model(request, std::move(exchange), rest, std::move(lease));
    return;
  }
  const std::string name = request.Query("model");
  Lease lease = name.empty() ? registry_.Only(true) : registry_.Acquire(name);
  if (!lease && !name.empty() && LoadOnDemand(name, request, exchange)) return;
  if (!lease || !lease->model().predictive) {
    if (name.empty()) {
      exchange->Respond(
          PredictError(400, "name the predictive model with ?model=<name>; this server serves " +
                                Listing(registry_.Names())));
    } else {
      exchange->Respond(PredictError(
          404,
          "no predictive model '" + name + "'; this server serves " + Listing(registry_.Names())));
    }
    return;
  }
  PredictService& service = *lease->model().predictive;
  service.HandleApi(request, std::move(exchange), std::move(lease));
}

void OpenAiServer::HandleModels(const HttpRequest& request, std::shared_ptr<Exchange> exchange) {
  ojson cards = ojson::array();
  registry_.ForEach([&](RegisteredModel& r, const ModelRegistry::Usage& usage) {
    ojson card = {{"id", r.name},         {"object", "model"},   {"created", r.loaded_at},
                  {"owned_by", "kiln"},   {"root", r.name},      {"parent", nullptr},
                  {"runtime", r.runtime}, {"threads", r.threads}};
    card["in_flight"] = usage.in_flight;
    card["idle_seconds"] = usage.idle_seconds;
    if (r.predictive) {
      card["max_model_len"] = nullptr;
      card["context_length"] = nullptr;
      card["predictive"] = r.predictive->Card();
      cards.push_back(std::move(card));
      return;
    }
    const ServedModel* m = r.generative.get();
    card["max_model_len"] = m->max_model_len();
    card["context_length"] = m->max_model_len();
    card["supports_tool_calling"] = m->has_chat_template();
    // What a request's absent sampling fields become, and where each value came from.
    const GenerationDefaults& defaults = m->generation_defaults();
    const engine::SamplingParams& p = defaults.params;
    card["sampling_defaults"] = {
        {"temperature", p.temperature},
        {"top_p", p.top_p},
        {"top_k", p.top_k},
        {"min_p", p.min_p},
        {"repetition_penalty", p.repetition_penalty},
        {"max_tokens", defaults.max_tokens ? ojson(*defaults.max_tokens) : ojson(nullptr)},
        {"source", defaults.source},
        {"from_model", defaults.applied}};
    cards.push_back(std::move(card));
  });
  if (request.path == "/v1/models") {
    exchange->Respond(JsonResponse(200, {{"object", "list"}, {"data", cards}}));
    return;
  }
  std::string id = request.path.substr(std::string("/v1/models/").size());
  for (const ojson& card : cards) {
    if (card["id"] == id) {
      exchange->Respond(JsonResponse(200, card));
      return;
    }
  }
  exchange->Respond(Error(
      404,
      "the model '" + id + "' does not exist; this server serves " + Listing(registry_.Names()),
      "model"));
}

void OpenAiServer::HandleChat(ojson body, Lease lease, std::shared_ptr<Exchange> exchange) {
  ServedModel* model = lease->model().generative.get();
  auto parsed = ParseChatCompletionRequest(body, model->generation_defaults().params);
  if (auto* err = std::get_if<RequestError>(&parsed)) {
    exchange->Respond(Error(400, err->message, err->param));
    return;
  }
  ChatCompletionRequest& req = std::get<ChatCompletionRequest>(parsed);
  ojson tools = req.tools_json.is_null() ? ojson::array() : req.tools_json;
  const bool use_tools = !req.tools.empty() && req.tool_choice != ToolChoiceMode::kNone;
  ojson messages = TemplateMessages(req, !model->template_renders_tools());
  // Models whose templates ignore `tools` are told about them in a system message.
  if (use_tools && !model->template_renders_tools()) AddToolInstructions(messages, tools);
  auto prompt = model->RenderChat(messages, use_tools ? &tools : nullptr, req.add_generation_prompt,
                                  req.continue_final_message);
  if (!prompt.ok()) {
    exchange->Respond(
        Error(400, "the chat template failed: " + prompt.status().message(), "messages"));
    return;
  }
  std::vector<int32_t> ids = model->tokenizer().Encode(*prompt, {.add_special_tokens = false});

  JobSettings s = SettingsFor(JobKind::kChat, req.options, model->id());
  if (s.prompt_logprobs_field) s.prompt_ids = {ids};
  // Constrained decoding: a JSON response format, a forced tool call, or a call the model
  // may start by writing <tool_call>.
  engine::ConstraintFactory constraint;
  std::shared_ptr<const text::JsonGrammar> grammar;
  const bool forced_call = use_tools && (req.tool_choice == ToolChoiceMode::kRequired ||
                                         req.tool_choice == ToolChoiceMode::kNamed);
  if (use_tools) {
    auto schema = CallSchema(req.tools, req.tool_choice == ToolChoiceMode::kNamed
                                            ? std::optional<std::string>(req.tool_choice_name)
                                            : std::nullopt);
    auto compiled = text::JsonGrammar::FromSchema(schema);
    if (!compiled.ok()) {
      exchange->Respond(
          Error(400, "cannot enforce the tools' parameter schemas: " + compiled.status().message(),
                "tools"));
      return;
    }
    grammar = *compiled;
    s.tool_call_parser = [forced_call](const std::string& text) {
      return ParseToolCalls(text, forced_call);
    };
    if (forced_call) {
      s.buffer_content_when_streaming = true;
    } else {
      s.tool_call_trigger = kToolCallOpen;
    }
  } else if (req.response_format.type == ResponseFormat::Type::kJsonObject) {
    grammar = text::JsonGrammar::AnyObject();
  } else if (req.response_format.type == ResponseFormat::Type::kJsonSchema) {
    auto compiled = text::JsonGrammar::FromSchema(req.response_format.schema);
    if (!compiled.ok()) {
      exchange->Respond(
          Error(400, "cannot enforce response_format.json_schema: " + compiled.status().message(),
                "response_format.json_schema.schema"));
      return;
    }
    grammar = *compiled;
  }
  if (grammar && (forced_call || !use_tools)) {
    // The reply is the document: refuse a budget that cannot hold the shortest one, counted as
    // one token per byte, as the constraint counts it.
    const int64_t context_left = model->max_model_len() - static_cast<int64_t>(ids.size());
    const auto& max_tokens = req.options.sampling.max_tokens;
    const int64_t budget = max_tokens ? std::min(*max_tokens, context_left) : context_left;
    const int64_t shortest = grammar->min_document_bytes();
    if (context_left > 0 && shortest > budget) {
      const std::string what = use_tools ? "tool call" : "JSON document response_format allows";
      const std::string room = max_tokens && *max_tokens <= context_left
                                   ? "max_tokens is " + std::to_string(*max_tokens)
                                   : "the context leaves room for " + std::to_string(context_left) +
                                         " (max_model_len " +
                                         std::to_string(model->max_model_len()) + ", prompt of " +
                                         std::to_string(ids.size()) + " tokens)";
      exchange->Respond(Error(400,
                              "the shortest " + what + " takes " + std::to_string(shortest) +
                                  " tokens (one per byte), but " + room,
                              "max_tokens"));
      return;
    }
  }
  if (grammar) {
    auto masker = model->token_masker();
    auto bytes = model->token_bytes();
    std::vector<int32_t> eos = model->eos_ids();
    if (use_tools && !forced_call) {
      auto trigger_tokens = TriggerTokens::Find(*bytes, kToolCallOpen);
      constraint = [=] {
        return std::make_unique<TriggeredJsonConstraint>(bytes, masker, grammar, eos, kToolCallOpen,
                                                         trigger_tokens);
      };
    } else {
      constraint = [=] { return std::make_unique<JsonOutputConstraint>(masker, grammar, eos); };
    }
  }

  if (req.options.sampling.n > options_.max_seqs_per_request) {
    exchange->Respond(Error(400,
                            "n=" + std::to_string(req.options.sampling.n) +
                                " asks for more sequences than this server allows in one "
                                "request (" +
                                std::to_string(options_.max_seqs_per_request) + ")",
                            "n"));
    return;
  }
  auto job = std::make_shared<GenerationJob>(s, model, lease->model().metrics.get(), exchange);
  job->KeepAlive(lease);
  auto submitted = model->engine().Submit(
      ids, ForPrompt(req.options.sampling, *model, ids.size()),
      [job](const engine::TokenEvent& e) { job->OnEvent(0, e); }, constraint);
  if (!submitted.ok()) {
    exchange->Respond(SubmitError(submitted.status()));
    return;
  }
  job->AddEngineRequest(0, *submitted, static_cast<int64_t>(ids.size()));
  exchange->OnCancel([job] { job->Cancel(); });
}

void OpenAiServer::HandleCompletion(ojson body, Lease lease, std::shared_ptr<Exchange> exchange) {
  ServedModel* model = lease->model().generative.get();
  auto parsed = ParseCompletionRequest(body, model->generation_defaults().params);
  if (auto* err = std::get_if<RequestError>(&parsed)) {
    exchange->Respond(Error(400, err->message, err->param));
    return;
  }
  CompletionRequest& req = std::get<CompletionRequest>(parsed);
  const int64_t sequences = static_cast<int64_t>(req.prompts.size()) * req.options.sampling.n;
  if (sequences > options_.max_seqs_per_request) {
    exchange->Respond(Error(400,
                            std::to_string(req.prompts.size()) +
                                " prompts x n=" + std::to_string(req.options.sampling.n) +
                                " ask for " + std::to_string(sequences) +
                                " sequences; this server allows at most " +
                                std::to_string(options_.max_seqs_per_request) + " per request",
                            req.prompts.size() > 1 ? "prompt" : "n"));
    return;
  }
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::string> texts;
  for (const auto& p : req.prompts) {
    if (const auto* text = std::get_if<std::string>(&p)) {
      prompts.push_back(model->tokenizer().Encode(*text, {.add_special_tokens = true}));
      texts.push_back(*text);
    } else {
      const auto& ids = std::get<std::vector<int32_t>>(p);
      for (int32_t id : ids) {
        if (id < 0 || static_cast<size_t>(id) >= model->tokenizer().vocab_size()) {
          exchange->Respond(Error(
              400, "prompt token " + std::to_string(id) + " is outside the vocabulary", "prompt"));
          return;
        }
      }
      prompts.push_back(ids);
      texts.push_back(model->tokenizer().Decode(ids));
    }
  }
  JobSettings s = SettingsFor(JobKind::kCompletion, req.options, model->id());
  s.num_prompts = static_cast<int32_t>(prompts.size());
  if (req.echo) s.echo_prefixes = texts;
  s.echo_logprobs = req.echo && req.options.logprobs;
  if (req.options.sampling.prompt_logprobs) s.prompt_ids = prompts;
  auto job = std::make_shared<GenerationJob>(s, model, lease->model().metrics.get(), exchange);
  job->KeepAlive(lease);
  // All prompts are checked before any is queued, so a bad one is a clean 400 before the first
  // token of a good one can start a stream.
  std::vector<engine::Submission> submissions;
  for (int32_t i = 0; i < static_cast<int32_t>(prompts.size()); ++i) {
    submissions.push_back({prompts[i], ForPrompt(req.options.sampling, *model, prompts[i].size()),
                           [job, i](const engine::TokenEvent& e) { job->OnEvent(i, e); }, nullptr});
  }
  auto ids = model->engine().SubmitAll(std::move(submissions));
  if (!ids.ok()) {
    exchange->Respond(SubmitError(ids.status()));
    return;
  }
  for (int32_t i = 0; i < static_cast<int32_t>(prompts.size()); ++i) {
    job->AddEngineRequest(i, (*ids)[i], static_cast<int64_t>(prompts[i].size()));
  }
  exchange->OnCancel([job] { job->Cancel(); });
}

void OpenAiServer::HandleTokenize(ojson body, Lease lease, std::shared_ptr<Exchange> exchange) {
  ServedModel* model = lease->model().generative.get();
  auto parsed = ParseTokenizeRequest(body, model->id());
  if (auto* err = std::get_if<RequestError>(&parsed)) {
    exchange->Respond(Error(400, err->message, err->param));
    return;
  }
  TokenizeRequest& req = std::get<TokenizeRequest>(parsed);
  std::string prompt = std::move(req.prompt);
  if (req.chat) {
    ojson tools = req.chat->tools_json.is_null() ? ojson::array() : req.chat->tools_json;
    ojson messages = TemplateMessages(*req.chat, !model->template_renders_tools());
    if (!req.chat->tools.empty() && !model->template_renders_tools())
      AddToolInstructions(messages, tools);
    auto rendered = model->RenderChat(messages, &tools, req.chat->add_generation_prompt,
                                      req.chat->continue_final_message);
    if (!rendered.ok()) {
      exchange->Respond(
          Error(400, "the chat template failed: " + rendered.status().message(), "messages"));
      return;
    }
    prompt = std::move(*rendered);
  }
  std::vector<int32_t> ids =
      model->tokenizer().Encode(prompt, {.add_special_tokens = req.add_special_tokens});
  ojson out = {{"count", ids.size()}, {"max_model_len", model->max_model_len()}, {"tokens", ids}};
  if (req.return_token_strs) {
    ojson strs = ojson::array();
    for (int32_t id : ids) {
      const std::string* t = model->tokenizer().IdToToken(id);
      strs.push_back(t ? *t : "");
    }
    out["token_strs"] = strs;
  }
  exchange->Respond(JsonResponse(200, out));
}

void OpenAiServer::HandleDetokenize(ojson body, Lease lease, std::shared_ptr<Exchange> exchange) {
  ServedModel* model = lease->model().generative.get();
  auto ids = ParseDetokenizeRequest(body, model->tokenizer().vocab_size());
  if (auto* err = std::get_if<RequestError>(&ids)) {
    exchange->Respond(Error(400, err->message, err->param));
    return;
  }
  exchange->Respond(JsonResponse(
      200, {{"prompt", model->tokenizer().Decode(std::get<std::vector<int32_t>>(ids))}}));
}

std::string OpenAiServer::RenderMetrics() {
  std::vector<std::string> texts;
  registry_.ForEach([&](RegisteredModel& r, const ModelRegistry::Usage&) {
    if (r.predictive) {
      texts.push_back(r.predictive->RenderMetrics());
      return;
    }
    engine::EngineStats stats = r.generative->engine().stats();
    Metrics& metrics = *r.metrics;
    metrics.SetTokenTotals(stats.prompt_tokens_total, stats.generation_tokens_total);
    metrics.SetPreemptions(stats.preemptions_total);
    metrics.SetPrefixCache(stats.prefix_cache_queries_total, stats.prefix_cache_hits_total);
    texts.push_back(
        metrics.Render({static_cast<double>(stats.running), static_cast<double>(stats.waiting),
                        stats.kv_cache_usage, static_cast<double>(stats.kv_cache_slots_used),
                        static_cast<double>(stats.kv_cache_tokens_held)}));
  });
  return MergeExpositions(texts);
}

}  // namespace kiln::server
