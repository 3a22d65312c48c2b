// PredictServer: the HTTP API of a predictive model (predict/predictive_model.h), with Foundry
// Local's predictive contract.
//
// Routes: GET /health (alive), GET /ready (the model is loaded), GET /metrics, GET /v1/model,
// POST /v1/predict. A predict request is {"items": [{"content_type", "encoder": "base64",
// "data"}]} with exactly one item; application/json data is base64 of a JSON nested array
// holding the input tensor, and image/jpeg, image/png, image/gif, image/webp and image/bmp data
// an image, decoded and preprocessed into the input (predict/image_input.h). The reply is
// {"metadata": {"model_id", "batch_size", "inference_time_ms"}, "items": [{"content_type":
// "application/json", "encoder": "base64", "data"}]}, data being base64 of {"<output
// name>_<index>": value}. Errors are
// {"detail": "...", "error": {"message", "type", "param", "code"}}.
//
// Requests are checked on the HTTP threads and run on a worker thread; concurrent requests share
// one ONNX Runtime run (dynamic batching) where the model's batch dimension is open, each
// answered with its own rows. Requests beyond max_queued_requests waiting at once get 429 with
// Retry-After.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "kiln/predict/predictive_model.h"
#include "kiln/server/http_server.h"

namespace kiln::server {

struct PredictServerOptions {
  HttpServerOptions http;
  std::string api_key;              // empty: no authentication
  int64_t max_queued_requests = 0;  // 0: no limit
  // Dynamic batching, where the model's batch dimension is open: at most this many requests
  // share one run, and while requests keep coming the worker waits up to the delay for more.
  int64_t max_batch_size = 32;
  int64_t max_batch_delay_us = 2000;
  // How image items become the input tensor.
  predict::ImagePreprocess image;
};

// One predictive model's routes and its worker, without an HTTP server of its own: what
// PredictServer serves, and what a server of several models hands a predictive model's requests.
class PredictService {
 public:
  explicit PredictService(PredictServerOptions options);  // starts the worker threads
  ~PredictService();                                      // stops them (requests must be done)

  // Call before SetModel.
  void SetImagePreprocess(const predict::ImagePreprocess& image);
  void SetModel(std::unique_ptr<predict::PredictiveModel> model, std::string id);
  const std::string& id() const;
  bool loaded() const;
  // What GET /v1/model answers.
  nlohmann::ordered_json Card() const;
  // Requests queued or running.
  int64_t queued() const;

  // GET /v1/model and POST /v1/predict, the API key already checked. `hold` is kept until the
  // request is answered.
  void HandleApi(const HttpRequest& request, std::shared_ptr<Exchange> exchange,
                 std::shared_ptr<void> hold);
  // /v2/models/{name}[/versions/{v}] followed by `rest`: "" (metadata), "/ready" or "/infer".
  void HandleV2Model(const HttpRequest& request, std::shared_ptr<Exchange> exchange,
                     const std::string& rest, std::shared_ptr<void> hold);
  // The kiln:predict_* families, labelled with the model's name.
  std::string RenderMetrics() const;

 private:
  friend class PredictServer;
  struct State;
  std::shared_ptr<State> state_;
};

class PredictServer {
 public:
  explicit PredictServer(PredictServerOptions options);
  ~PredictServer();

  // Starts listening; /ready answers 503 until SetModel.
  Status Start();
  // Call before SetModel.
  void SetImagePreprocess(const predict::ImagePreprocess& image);
  void SetModel(std::unique_ptr<predict::PredictiveModel> model, std::string id);
  uint16_t port() const;

  // As OpenAiServer::Shutdown: stop accepting, let requests in flight finish, stop.
  bool Shutdown(std::chrono::milliseconds deadline);

 private:
  std::shared_ptr<PredictService> service_;
  std::unique_ptr<HttpServer> http_;
};

}  // namespace kiln::server
