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
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "kiln/server/http_server.h"
#include "kiln/server/metrics.h"
#include "kiln/server/model_registry.h"
#include "kiln/server/predict_server.h"
#include "kiln/server/served_model.h"

namespace kiln::server {

// A model loaded for a request that names one not loaded (kiln serve --models-dir).
struct LoadedModel {
  std::unique_ptr<ServedModel> generative;  // or
  std::unique_ptr<PredictService> predictive;
  int threads = 0;
};
// Loads the model a request names under that name; NotFound when there is no such model.
using ModelLoader = std::function<Result<LoadedModel>(const std::string& name)>;

struct OpenAiServerOptions {
  HttpServerOptions http;
  std::string api_key;  // empty: no authentication
  // The most sequences one request may ask for (prompts x n); more is a 400.
  int64_t max_seqs_per_request = 256;
  // Loading on first request: a model a request names that is not loaded is loaded by `loader`
  // (when set) while the request waits. At most `max_loaded_models` are loaded at once (0: no
  // limit; the on-demand model idle longest makes room), and on-demand models idle for
  // `idle_unload_seconds` are unloaded (0: never).
  ModelLoader loader;
  int max_loaded_models = 0;
  double idle_unload_seconds = 0;
};

class OpenAiServer {
 public:
  explicit OpenAiServer(OpenAiServerOptions options);
  ~OpenAiServer();

  // Starts listening; /health answers 503 until SetReady (or SetModel).
  Status Start();
  // Adds a model under `name`; InvalidArgument when the name is taken.
  Status AddModel(std::unique_ptr<ServedModel> model, int threads = 0, bool on_demand = false);
  Status AddPredictiveModel(std::unique_ptr<PredictService> service, int threads = 0,
                            bool on_demand = false);
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
  Lease GenerativeFor(const HttpRequest& request, const nlohmann::ordered_json& body,
                      std::shared_ptr<Exchange> exchange);
  void HandleChat(nlohmann::ordered_json body, Lease lease, std::shared_ptr<Exchange> exchange);
  void HandleCompletion(nlohmann::ordered_json body, Lease lease,
                        std::shared_ptr<Exchange> exchange);
  void HandleTokenize(nlohmann::ordered_json body, Lease lease, std::shared_ptr<Exchange> exchange);
  void HandleDetokenize(nlohmann::ordered_json body, Lease lease,
                        std::shared_ptr<Exchange> exchange);
  void HandleModels(const HttpRequest& request, std::shared_ptr<Exchange> exchange);
  void HandlePredictive(const HttpRequest& request, std::shared_ptr<Exchange> exchange);
  void HandleUnload(const std::string& name, std::shared_ptr<Exchange> exchange);
  // Loads `name` for a request that named it (off the I/O threads), then hands the request back
  // to Handle; true when a load was started or joined, false when there is no loader.
  bool LoadOnDemand(const std::string& name, const HttpRequest& request,
                    std::shared_ptr<Exchange> exchange);
  void IdleLoop();
  void LoadAndDispatch(const std::string& name);
  std::string RenderMetrics();

  OpenAiServerOptions options_;
  ModelRegistry registry_;  // before http_: connections end before the models they lease
  std::unique_ptr<HttpServer> http_;
  std::atomic<bool> ready_{false};
  std::atomic<uint64_t> next_id_{1};
  // On-demand loads in progress: the requests waiting for each.
  std::mutex loading_mu_;
  std::map<std::string, std::vector<std::pair<HttpRequest, std::shared_ptr<Exchange>>>> loading_;
  std::condition_variable idle_cv_;
  bool stopping_ = false;  // guarded by loading_mu_
  std::thread idle_thread_;
  std::vector<std::thread> load_threads_;  // guarded by loading_mu_; joined at the end
};

}  // namespace kiln::server
