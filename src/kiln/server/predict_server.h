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
  struct State;
  std::shared_ptr<State> state_;
  std::unique_ptr<HttpServer> http_;
};

}  // namespace kiln::server
