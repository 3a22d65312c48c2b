#include "kiln/server/predict_server.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "kiln/base/base64.h"
#include "kiln/base/log.h"
#include "kiln/server/metrics.h"
#include "kiln/server/open_inference.h"

namespace kiln::server {
namespace {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

HttpResponse JsonReply(int status, const ojson& body) {
  return {
      status, "application/json", body.dump(-1, ' ', false, ojson::error_handler_t::replace), {}};
}

// Foundry's {"detail"} beside Kiln's usual error object.
HttpResponse Error(int status, const std::string& message) {
  const char* type = status == 401   ? "authentication_error"
                     : status == 404 ? "not_found_error"
                     : status == 429 ? "rate_limit_error"
                     : status >= 500 ? "server_error"
                                     : "invalid_request_error";
  return JsonReply(
      status,
      {{"detail", message},
       {"error", {{"message", message}, {"type", type}, {"param", nullptr}, {"code", status}}}});
}

constexpr const char* kSupportedTypes =
    "application/json, image/jpeg, image/png, image/gif, image/webp, image/bmp";

}  // namespace

struct PredictService::State {
  PredictServerOptions options;
  std::atomic<predict::PredictiveModel*> model{nullptr};
  std::unique_ptr<predict::PredictiveModel> owned;
  std::string id;

  // A request waiting for its run.
  // A request waiting for its run, with how its protocol answers (/v1/predict or /v2).
  struct Pending {
    predict::PredictInput input;
    std::shared_ptr<Exchange> exchange;
    std::chrono::steady_clock::time_point arrived;
    std::function<HttpResponse(const predict::PredictOutput&, double run_ms)> reply;
    std::function<HttpResponse(int status, const std::string& message)> error;
    std::shared_ptr<void> hold;  // kept until the request is answered (the model's lease)
  };

  // The worker: runs in arrival order, off the HTTP threads, each taking the waiting requests
  // that fit one batch.
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Pending> queue;           // guarded by mu
  bool running = false;                // guarded by mu: a run is going
  bool arrived_while_running = false;  // guarded by mu: since the last batch was taken
  bool stopping = false;               // guarded by mu
  std::thread worker;
  std::atomic<int64_t> waiting{0};  // queued or running

  // The preparing threads: a request's body is parsed, its data decoded (an image: decoded and
  // resized) and laid out as the input off the HTTP threads, which go on serving other
  // connections meanwhile.
  std::mutex prep_mu;
  std::condition_variable prep_cv;
  std::deque<std::function<void()>> prep_queue;  // guarded by prep_mu
  bool prep_stopping = false;                    // guarded by prep_mu
  std::vector<std::thread> preparers;

  void PrepLoop() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock lock(prep_mu);
        prep_cv.wait(lock, [&] { return prep_stopping || !prep_queue.empty(); });
        if (prep_queue.empty()) return;
        job = std::move(prep_queue.front());
        prep_queue.pop_front();
      }
      job();
    }
  }

  void Prepare(std::function<void()> job) {
    {
      std::lock_guard lock(prep_mu);
      prep_queue.push_back(std::move(job));
    }
    prep_cv.notify_one();
  }

  std::atomic<int64_t> ok_total{0};
  std::atomic<int64_t> error_total{0};
  Histogram latency{{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0}};
  Histogram batch_size{{1, 2, 4, 8, 16, 32, 64}};

  int64_t MaxBatch() const {
    const predict::PredictiveModel* m = model.load();
    return m != nullptr && m->batchable() ? std::max<int64_t>(1, options.max_batch_size) : 1;
  }

  // Moves the queued requests that can share `batch`'s run into it, in order, up to `limit`.
  void TakeCompatible(std::vector<Pending>& batch, size_t limit) {
    for (auto it = queue.begin(); it != queue.end() && batch.size() < limit;) {
      if (batch.empty() || predict::PredictiveModel::SameRowShape(batch[0].input, it->input)) {
        batch.push_back(std::move(*it));
        it = queue.erase(it);
      } else {
        ++it;
      }
    }
  }

  void Run() {
    for (;;) {
      std::vector<Pending> batch;
      {
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return stopping || !queue.empty(); });
        if (queue.empty()) return;
        const size_t limit = static_cast<size_t>(MaxBatch());
        TakeCompatible(batch, limit);
        // Requests came while the last run ran: more are likely on their way, so wait a
        // moment for them. A lone client (none came) is never held back.
        if (batch.size() < limit && arrived_while_running && options.max_batch_delay_us > 0) {
          const auto deadline = std::chrono::steady_clock::now() +
                                std::chrono::microseconds(options.max_batch_delay_us);
          while (batch.size() < limit && queue.empty() && !stopping &&
                 cv.wait_until(lock, deadline, [&] { return stopping || !queue.empty(); })) {
            TakeCompatible(batch, limit);
          }
        }
        arrived_while_running = false;
        running = true;
      }
      RunBatch(batch);
      std::lock_guard lock(mu);
      running = false;
    }
  }

  void RunBatch(std::vector<Pending>& batch) {
    std::vector<const predict::PredictInput*> inputs;
    for (const Pending& p : batch) inputs.push_back(&p.input);
    const auto start = std::chrono::steady_clock::now();
    std::vector<Result<predict::PredictOutput>> results = model.load()->Run(inputs);
    const auto end = std::chrono::steady_clock::now();
    const double run_ms = std::chrono::duration<double, std::milli>(end - start).count();
    waiting -= static_cast<int64_t>(batch.size());
    batch_size.Observe(static_cast<double>(results[0].ok() ? results[0]->batch_rows : 1));
    for (size_t i = 0; i < batch.size(); ++i) {
      Pending& p = batch[i];
      if (!results[i].ok()) {
        ++error_total;
        const bool bad_input = results[i].status().code() == StatusCode::kInvalidArgument;
        p.exchange->Respond(p.error(bad_input ? 400 : 500, results[i].status().message()));
        continue;
      }
      ++ok_total;
      latency.Observe(std::chrono::duration<double>(end - p.arrived).count());
      p.exchange->Respond(p.reply(*results[i], run_ms));
    }
  }

  // The /v1/predict reply.
  HttpResponse PredictReply(const predict::PredictOutput& out, double run_ms) const {
    ojson reply = {
        {"metadata",
         {{"model_id", id}, {"batch_size", out.batch_rows}, {"inference_time_ms", run_ms}}},
        {"items",
         ojson::array({{{"content_type", "application/json"},
                        {"encoder", "base64"},
                        {"data", Base64Encode(out.outputs.dump(
                                     -1, ' ', false, ojson::error_handler_t::replace))}}})}};
    return JsonReply(200, reply);
  }

  // Queues a checked request for the worker; 429 when the queue is full.
  void Enqueue(Pending pending) {
    const int64_t limit = options.max_queued_requests;
    if (limit > 0 && waiting.load() >= limit) {
      ++error_total;
      const std::string message =
          "the queue is full: " + std::to_string(limit) + " requests are waiting; retry after 1 s";
      HttpResponse r = pending.error(429, message);
      if (r.content_type == "application/json") {
        // Foundry's fields beside the error: how deep the queue is, when to come back.
        json body = json::parse(r.body, nullptr, false);
        if (body.is_object()) {
          body["queue_depth"] = waiting.load();
          body["retry_after"] = 1;
          r.body = body.dump();
        }
      }
      r.headers.emplace_back("Retry-After", "1");
      pending.exchange->Respond(std::move(r));
      return;
    }
    ++waiting;
    {
      std::lock_guard lock(mu);
      queue.push_back(std::move(pending));
      if (running) arrived_while_running = true;
    }
    cv.notify_one();
  }

  void HandleV2(const HttpRequest& request, std::shared_ptr<Exchange> exchange);
  void HandleV2Model(const HttpRequest& request, std::shared_ptr<Exchange> exchange,
                     const std::string& rest, std::shared_ptr<void> hold);
  void HandleInfer(const HttpRequest& request, std::shared_ptr<Exchange> exchange,
                   std::shared_ptr<void> hold);

  void Handle(const HttpRequest& request, std::shared_ptr<Exchange> exchange);
  void HandleApi(const HttpRequest& request, std::shared_ptr<Exchange> exchange,
                 std::shared_ptr<void> hold);
  ojson ModelCard() const;
  void HandlePredict(const HttpRequest& request, std::shared_ptr<Exchange> exchange,
                     std::shared_ptr<void> hold);
  std::string RenderMetrics() const;
  void Stop();
};

PredictService::PredictService(PredictServerOptions options) : state_(std::make_shared<State>()) {
  state_->options = std::move(options);
  State* state = state_.get();
  state_->worker = std::thread([state] { state->Run(); });
  const int preparers = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  for (int i = 0; i < preparers; ++i) {
    state_->preparers.emplace_back([state] { state->PrepLoop(); });
  }
}

PredictService::~PredictService() { state_->Stop(); }

void PredictService::State::Stop() {
  {
    std::lock_guard lock(prep_mu);
    if (prep_stopping) return;
    prep_stopping = true;
  }
  prep_cv.notify_all();
  for (std::thread& t : preparers) t.join();
  {
    std::lock_guard lock(mu);
    stopping = true;
  }
  cv.notify_all();
  if (worker.joinable()) worker.join();
}

void PredictService::SetImagePreprocess(const predict::ImagePreprocess& image) {
  state_->options.image = image;
}

void PredictService::SetModel(std::unique_ptr<predict::PredictiveModel> model, std::string id) {
  state_->id = std::move(id);
  state_->owned = std::move(model);
  state_->model.store(state_->owned.get());
}

const std::string& PredictService::id() const { return state_->id; }

bool PredictService::loaded() const { return state_->model.load() != nullptr; }

nlohmann::ordered_json PredictService::Card() const { return state_->ModelCard(); }

void PredictService::HandleApi(const HttpRequest& request, std::shared_ptr<Exchange> exchange,
                               std::shared_ptr<void> hold) {
  state_->HandleApi(request, std::move(exchange), std::move(hold));
}

void PredictService::HandleV2Model(const HttpRequest& request, std::shared_ptr<Exchange> exchange,
                                   const std::string& rest, std::shared_ptr<void> hold) {
  state_->HandleV2Model(request, std::move(exchange), rest, std::move(hold));
}

std::string PredictService::RenderMetrics() const { return state_->RenderMetrics(); }

int64_t PredictService::queued() const { return state_->waiting.load(); }

PredictServer::PredictServer(PredictServerOptions options)
    : service_(std::make_shared<PredictService>(options)) {
  std::shared_ptr<PredictService> service = service_;
  http_ = std::make_unique<HttpServer>(
      options.http, [service](const HttpRequest& r, std::shared_ptr<Exchange> ex) {
        service->state_->Handle(r, std::move(ex));
      });
}

PredictServer::~PredictServer() {
  if (http_) http_->Stop();
  service_.reset();
}

Status PredictServer::Start() { return http_->Start(); }

uint16_t PredictServer::port() const { return http_->port(); }

void PredictServer::SetImagePreprocess(const predict::ImagePreprocess& image) {
  service_->SetImagePreprocess(image);
}

void PredictServer::SetModel(std::unique_ptr<predict::PredictiveModel> model, std::string id) {
  service_->SetModel(std::move(model), std::move(id));
}

bool PredictServer::Shutdown(std::chrono::milliseconds deadline) {
  http_->StopAccepting();
  bool idle = http_->WaitForIdle(deadline);
  http_->Stop();
  return idle;
}

void PredictService::State::Handle(const HttpRequest& request, std::shared_ptr<Exchange> exchange) {
  const std::string& path = request.path;
  auto method_is = [&](const char* m) {
    if (request.method == m) return true;
    exchange->Respond(Error(405, "use " + std::string(m) + " for " + path));
    return false;
  };
  if (path == "/health") {
    if (method_is("GET")) exchange->Respond(JsonReply(200, {{"status", "alive"}}));
    return;
  }
  if (path == "/ready") {
    if (!method_is("GET")) return;
    if (model.load() == nullptr) {
      exchange->Respond(Error(503, "the model is loading"));
    } else {
      exchange->Respond(JsonReply(200, {{"status", "ready"}}));
    }
    return;
  }
  if (path == "/metrics") {
    if (method_is("GET")) {
      exchange->Respond({200, "text/plain; version=0.0.4; charset=utf-8", RenderMetrics(), {}});
    }
    return;
  }
  if (path == "/v2" || path.rfind("/v2/", 0) == 0) {
    HandleV2(request, exchange);
    return;
  }
  if (path != "/v1/model" && path != "/v1/predict") {
    exchange->Respond(Error(404, "no route for " + request.method + " " + path));
    return;
  }
  if (!HasApiKey(request, options.api_key)) {
    exchange->Respond(Error(401,
                            "invalid or missing API key: send it as 'Authorization: Bearer "
                            "<key>' or in an 'api-key' header"));
    return;
  }
  HandleApi(request, std::move(exchange), nullptr);
}

void PredictService::State::HandleApi(const HttpRequest& request,
                                      std::shared_ptr<Exchange> exchange,
                                      std::shared_ptr<void> hold) {
  const std::string& path = request.path;
  auto method_is = [&](const char* m) {
    if (request.method == m) return true;
    exchange->Respond(Error(405, "use " + std::string(m) + " for " + path));
    return false;
  };
  if (model.load() == nullptr) {
    exchange->Respond(Error(503, "the model is loading"));
    return;
  }
  if (path == "/v1/model") {
    if (method_is("GET")) exchange->Respond(JsonReply(200, ModelCard()));
  } else if (method_is("POST")) {
    auto copy = std::make_shared<HttpRequest>(request);
    Prepare([this, copy, exchange, hold] { HandlePredict(*copy, exchange, hold); });
  }
}

ojson PredictService::State::ModelCard() const {
  const predict::PredictiveModel& m = *model.load();
  ojson outputs = ojson::array();
  for (const predict::ValueInfo& o : m.outputs()) {
    outputs.push_back({{"name", o.name}, {"shape", o.shape}, {"type", o.type}});
  }
  return ojson(
      {{"id", id},
       {"name", id},
       {"type", "predictive"},
       {"input_name", m.input().name},
       {"input_type", m.input().type},
       {"input_shape", m.input().shape},
       {"outputs", outputs},
       {"batch_size", MaxBatch()},
       {"accepts", m.takes_images() ? ojson::array({"application/json", "image/jpeg", "image/png",
                                                    "image/gif", "image/webp", "image/bmp"})
                                    : ojson::array({"application/json"})},
       {"execution_provider", "CPUExecutionProvider"},
       {"status", "ready"}});
}

void PredictService::State::HandlePredict(const HttpRequest& request,
                                          std::shared_ptr<Exchange> exchange,
                                          std::shared_ptr<void> hold) {
  auto fail = [&](int status, const std::string& message) {
    ++error_total;
    exchange->Respond(Error(status, message));
  };
  json body = json::parse(request.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return fail(400, "the request body is not JSON");
  if (!body.is_object() || !body.contains("items") || !body["items"].is_array()) {
    return fail(400,
                "the body must be {\"items\": [{\"content_type\", \"encoder\": \"base64\", "
                "\"data\"}]}");
  }
  const json& items = body["items"];
  if (items.size() != 1) {
    return fail(400,
                "'items' must hold exactly one item; it holds " + std::to_string(items.size()));
  }
  const json& item = items[0];
  if (!item.is_object()) return fail(400, "items[0] must be an object");
  auto text_field = [&](const char* name) -> std::optional<std::string> {
    auto it = item.find(name);
    if (it == item.end() || !it->is_string()) return std::nullopt;
    return it->get<std::string>();
  };
  std::optional<std::string> content_type = text_field("content_type");
  if (!content_type) return fail(400, "items[0].content_type is missing (a string)");
  std::optional<std::string> encoder = text_field("encoder");
  if (encoder && *encoder != "base64") {
    return fail(400, "items[0].encoder is '" + *encoder + "'; the only encoder is 'base64'");
  }
  std::optional<std::string> data = text_field("data");
  if (!data) return fail(400, "items[0].data is missing (a base64 string)");
  std::string type = content_type->substr(0, content_type->find(';'));
  const bool image = predict::IsImageContentType(type);
  if (type != "application/json" && !image) {
    return fail(415, "content_type '" + *content_type +
                         "' is not supported; supported: " + kSupportedTypes);
  }
  std::optional<std::string> bytes = Base64Decode(*data);
  if (!bytes) return fail(400, "items[0].data is not base64");
  Result<predict::PredictInput> input = Status::Internal("unset");
  if (image) {
    Result<predict::RgbImage> decoded =
        predict::DecodeImage(type, *bytes, options.image.max_pixels);
    if (!decoded.ok()) return fail(400, decoded.status().message());
    input = model.load()->PrepareImage(decoded.value(), options.image);
  } else {
    json tensor = json::parse(*bytes, nullptr, /*allow_exceptions=*/false);
    if (tensor.is_discarded()) {
      return fail(400,
                  "items[0].data decodes to something that is not JSON (application/json "
                  "data is base64 of a JSON nested array)");
    }
    input = model.load()->Prepare(tensor);
  }
  if (!input.ok())
    return fail(input.status().code() == StatusCode::kInvalidArgument ? 400 : 500,
                input.status().message());

  Enqueue(Pending{std::move(input).value(), std::move(exchange), std::chrono::steady_clock::now(),
                  [this](const predict::PredictOutput& out, double run_ms) {
                    return PredictReply(out, run_ms);
                  },
                  [](int status, const std::string& message) { return Error(status, message); },
                  std::move(hold)});
}

// The Open Inference Protocol's routes: /v2 (server metadata), /v2/health/live,
// /v2/health/ready, and under /v2/models/{name} (or /v2/models/{name}/versions/{version}): the
// model's metadata, /ready and /infer.
void PredictService::State::HandleV2(const HttpRequest& request,
                                     std::shared_ptr<Exchange> exchange) {
  const std::string& path = request.path;
  auto method_is = [&](const char* m) {
    if (request.method == m) return true;
    exchange->Respond(oip::Error(405, "use " + std::string(m) + " for " + path));
    return false;
  };
  const predict::PredictiveModel* m = model.load();
  if (path == "/v2/health/live") {
    if (method_is("GET")) exchange->Respond(JsonReply(200, {{"live", true}}));
    return;
  }
  if (path == "/v2/health/ready") {
    if (method_is("GET")) exchange->Respond(JsonReply(m ? 200 : 503, {{"ready", m != nullptr}}));
    return;
  }
  if (!HasApiKey(request, options.api_key)) {
    exchange->Respond(oip::Error(401, "invalid or missing API key"));
    return;
  }
  if (path == "/v2") {
    if (method_is("GET")) {
      exchange->Respond(JsonReply(
          200, {{"name", "kiln"}, {"version", "1"}, {"extensions", {"binary_tensor_data"}}}));
    }
    return;
  }
  std::string name, rest;
  if (!oip::SplitModelPath(path, &name, &rest)) {
    exchange->Respond(oip::Error(404, "no route for " + request.method + " " + path));
    return;
  }
  if (m == nullptr) {
    exchange->Respond(oip::Error(503, "the model is loading"));
    return;
  }
  if (name != id) {
    exchange->Respond(oip::Error(404, "no model '" + name + "'; this server serves '" + id + "'"));
    return;
  }
  HandleV2Model(request, std::move(exchange), rest, nullptr);
}

void PredictService::State::HandleV2Model(const HttpRequest& request,
                                          std::shared_ptr<Exchange> exchange,
                                          const std::string& rest, std::shared_ptr<void> hold) {
  const std::string& path = request.path;
  auto method_is = [&](const char* m) {
    if (request.method == m) return true;
    exchange->Respond(oip::Error(405, "use " + std::string(m) + " for " + path));
    return false;
  };
  const predict::PredictiveModel* m = model.load();
  if (m == nullptr) {
    exchange->Respond(oip::Error(503, "the model is loading"));
    return;
  }
  if (rest.empty()) {
    if (method_is("GET")) exchange->Respond(JsonReply(200, oip::ModelMetadata(*m, id)));
  } else if (rest == "/ready") {
    if (method_is("GET")) exchange->Respond(JsonReply(200, {{"name", id}, {"ready", true}}));
  } else if (rest == "/infer") {
    if (!method_is("POST")) return;
    auto copy = std::make_shared<HttpRequest>(request);
    Prepare([this, copy, exchange, hold]() mutable {
      HandleInfer(*copy, std::move(exchange), std::move(hold));
    });
  } else {
    exchange->Respond(oip::Error(404, "no route for " + request.method + " " + path));
  }
}

void PredictService::State::HandleInfer(const HttpRequest& request,
                                        std::shared_ptr<Exchange> exchange,
                                        std::shared_ptr<void> hold) {
  const predict::PredictiveModel& m = *model.load();
  Result<oip::InferRequest> parsed =
      oip::ParseInferRequest(m, request.body, request.Header("inference-header-content-length"));
  if (!parsed.ok()) {
    ++error_total;
    exchange->Respond(oip::Error(400, parsed.status().message()));
    return;
  }
  auto infer = std::make_shared<oip::InferRequest>(std::move(parsed).value());
  predict::PredictInput input = std::move(infer->input);
  Enqueue(
      Pending{std::move(input), std::move(exchange), std::chrono::steady_clock::now(),
              [this, infer](const predict::PredictOutput& out, double) {
                return oip::InferResponse(*model.load(), id, *infer, out.outputs);
              },
              [](int status, const std::string& message) { return oip::Error(status, message); },
              std::move(hold)});
}

std::string PredictService::State::RenderMetrics() const {
  const std::string labels = "model_name=\"" + id + "\"";
  std::string out;
  out += "# HELP kiln:predict_requests_total Predict requests answered, by outcome.\n";
  out += "# TYPE kiln:predict_requests_total counter\n";
  out += "kiln:predict_requests_total{" + labels + ",status=\"ok\"} " +
         std::to_string(ok_total.load()) + "\n";
  out += "kiln:predict_requests_total{" + labels + ",status=\"error\"} " +
         std::to_string(error_total.load()) + "\n";
  out += "# HELP kiln:predict_queue_depth Predict requests queued or running.\n";
  out += "# TYPE kiln:predict_queue_depth gauge\n";
  out += "kiln:predict_queue_depth{" + labels + "} " + std::to_string(waiting.load()) + "\n";
  out +=
      "# HELP kiln:predict_request_latency_seconds Time from a predict request's arrival to "
      "its answer.\n";
  out += "# TYPE kiln:predict_request_latency_seconds histogram\n";
  latency.Render("kiln:predict_request_latency_seconds", labels, &out);
  out += "# HELP kiln:predict_batch_size Requests in the model run each request rode in.\n";
  out += "# TYPE kiln:predict_batch_size histogram\n";
  batch_size.Render("kiln:predict_batch_size", labels, &out);
  return out;
}

}  // namespace kiln::server
