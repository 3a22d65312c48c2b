// OpenAiServer: the OpenAI-compatible HTTP API over the models of a ModelRegistry, routed by
// each request's `model` field. Generative models answer the OpenAI routes; predictive models
// answer /v1/predict and /v1/model (named by ?model=, or the one predictive model) and the Open
// Inference Protocol's /v2/models/{name}.
//
// Routes: GET /health, GET /metrics, GET /v1/models, GET /v1/models/{id},
// POST /v1/chat/completions, POST /v1/completions, POST /tokenize, POST /detokenize,
// GET /v1/model, POST /v1/predict, /v2/..., GET /openai/loadedmodels,
// GET|POST /openai/unload/{name} (requests in flight finish first).
// Every error is an OpenAI-style body: {"error": {"message", "type", "param", "code"}}.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include "kiln/server/http_server.h"
#include "kiln/server/metrics.h"
#include "kiln/server/model_registry.h"
#include "kiln/server/predict_server.h"
#include "kiln/server/served_model.h"

namespace kiln::server {

struct OpenAiServerOptions {
  HttpServerOptions http;
  std::string api_key;  // empty: no authentication
  // The most sequences one request may ask for (prompts x n); more is a 400.
  int64_t max_seqs_per_request = 256;
};

class OpenAiServer {
 public:
  explicit OpenAiServer(OpenAiServerOptions options);
  ~OpenAiServer();

  // Starts listening; /health answers 503 until SetReady (or SetModel).
  Status Start();
  // Adds a model under `name`; InvalidArgument when the name is taken.
  Status AddModel(std::unique_ptr<ServedModel> model, int threads = 0);
  Status AddPredictiveModel(std::unique_ptr<PredictService> service, int threads = 0);
  // Every model given at start is loaded: /health answers 200.
  void SetReady() { ready_ = true; }
  // AddModel, then SetReady: one model.
  void SetModel(std::unique_ptr<ServedModel> model);
  ModelRegistry& registry() { return registry_; }
  uint16_t port() const { return http_->port(); }

  // Graceful shutdown: stop accepting, let requests in flight finish (up to `deadline`), stop.
  // Returns false if requests were still running at the deadline (they are cut off).
  bool Shutdown(std::chrono::milliseconds deadline);

 private:
  using Lease = ModelRegistry::LeasePtr;
  void Handle(const HttpRequest& request, std::shared_ptr<Exchange> exchange);
  // The generative model a request body names (or the one generative model when it names none);
  // null after answering 404 / 400.
  Lease GenerativeFor(const nlohmann::ordered_json& body, Exchange& exchange);
  void HandleChat(nlohmann::ordered_json body, Lease lease, std::shared_ptr<Exchange> exchange);
  void HandleCompletion(nlohmann::ordered_json body, Lease lease,
                        std::shared_ptr<Exchange> exchange);
  void HandleTokenize(nlohmann::ordered_json body, Lease lease, std::shared_ptr<Exchange> exchange);
  void HandleDetokenize(nlohmann::ordered_json body, Lease lease,
                        std::shared_ptr<Exchange> exchange);
  void HandleModels(const HttpRequest& request, std::shared_ptr<Exchange> exchange);
  void HandlePredictive(const HttpRequest& request, std::shared_ptr<Exchange> exchange);
  void HandleUnload(const std::string& name, std::shared_ptr<Exchange> exchange);
  std::string RenderMetrics();

  OpenAiServerOptions options_;
  ModelRegistry registry_;  // before http_: connections end before the models they lease
  std::unique_ptr<HttpServer> http_;
  std::atomic<bool> ready_{false};
  std::atomic<uint64_t> next_id_{1};
};

}  // namespace kiln::server
