// OpenAiServer: the OpenAI-compatible HTTP API over one served model.
//
// Routes: GET /health, GET /metrics, GET /v1/models, GET /v1/models/{id},
// POST /v1/chat/completions, POST /v1/completions, POST /tokenize, POST /detokenize.
// Every error is an OpenAI-style body: {"error": {"message", "type", "param", "code"}}.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include "kiln/server/http_server.h"
#include "kiln/server/metrics.h"
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

  // Starts listening; /health answers 503 until SetModel.
  Status Start();
  void SetModel(std::unique_ptr<ServedModel> model);
  uint16_t port() const { return http_->port(); }

  // Graceful shutdown: stop accepting, let requests in flight finish (up to `deadline`), stop.
  // Returns false if requests were still running at the deadline (they are cut off).
  bool Shutdown(std::chrono::milliseconds deadline);

 private:
  void Handle(const HttpRequest& request, std::shared_ptr<Exchange> exchange);
  void HandleChat(const HttpRequest& request, std::shared_ptr<Exchange> exchange);
  void HandleCompletion(const HttpRequest& request, std::shared_ptr<Exchange> exchange);
  void HandleTokenize(const HttpRequest& request, std::shared_ptr<Exchange> exchange);
  void HandleDetokenize(const HttpRequest& request, std::shared_ptr<Exchange> exchange);
  void HandleModels(const HttpRequest& request, std::shared_ptr<Exchange> exchange);
  std::string RenderMetrics();

  OpenAiServerOptions options_;
  std::unique_ptr<HttpServer> http_;
  std::atomic<ServedModel*> model_{nullptr};
  std::unique_ptr<ServedModel> owned_model_;
  std::unique_ptr<Metrics> metrics_;
  std::atomic<uint64_t> next_id_{1};
};

}  // namespace kiln::server
