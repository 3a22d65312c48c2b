// HttpServer: an asynchronous HTTP/1.1 server (Boost.Beast on C++20 coroutines). One coroutine
// per connection, a few I/O threads in all, so thousands of open connections (idle keep-alive
// or long streams) cost memory, not threads.
//
// Each request is handed to the Handler with an Exchange through which the reply is sent, from
// any thread and at any later time: one complete response, or a stream of chunks (server-sent
// events). While a reply is pending the connection watches the socket, so a client that goes
// away is noticed at once and the exchange's cancel callback runs.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "kiln/base/status.h"

namespace kiln::server {

struct HttpRequest {
  std::string method;                          // "GET", "POST", ...
  std::string target;                          // path and query as sent
  std::string path;                            // target without the query
  std::map<std::string, std::string> headers;  // names lowercased
  std::string body;

  // The header's value, or "" when absent. `name` must be lowercase.
  std::string Header(std::string_view name) const;
  // The value of a query parameter (percent-decoded), or "" when it is absent.
  std::string Query(std::string_view name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

// One request's reply channel. Every method may be called from any thread.
class Exchange {
 public:
  virtual ~Exchange() = default;
  // Sends a complete response; the exchange ends.
  virtual void Respond(HttpResponse response) = 0;
  // Starts a streamed reply with chunked transfer encoding.
  virtual void StartStream(int status, std::string content_type) = 0;
  virtual void Write(std::string chunk) = 0;
  virtual void End() = 0;
  // `fn` runs once, on an I/O thread, if the client disconnects before the exchange ends
  // (immediately if it already has).
  virtual void OnCancel(std::function<void()> fn) = 0;
  virtual bool cancelled() const = 0;
};

using Handler = std::function<void(const HttpRequest&, std::shared_ptr<Exchange>)>;

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8080;  // 0: any free port (see HttpServer::port)
  int io_threads = 2;
  size_t max_body_bytes = 8 * 1024 * 1024;
  // How long a connection may sit between requests or inside one request's headers and body.
  std::chrono::seconds read_timeout{600};
};

// Whether `request` carries `api_key` (as "Authorization: Bearer <key>" or an "api-key" header);
// true when `api_key` is empty (no authentication). `api_key` may list several keys separated
// by commas, each accepted.
bool HasApiKey(const HttpRequest& request, const std::string& api_key);

// Writes an OpenAI-style error body: {"error": {"message", "type", "param", "code"}}.
std::string ErrorBody(std::string_view message, std::string_view type, int code);

class HttpServer {
 public:
  HttpServer(HttpServerOptions options, Handler handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds, listens and starts the I/O threads.
  Status Start();
  uint16_t port() const { return bound_port_; }

  // Closes the listening socket; connections already open keep being served.
  void StopAccepting();
  // Waits until no request is being answered, or the deadline passes. True when idle.
  bool WaitForIdle(std::chrono::milliseconds deadline);
  // Stops everything: open connections are dropped.
  void Stop();

  int64_t open_connections() const { return open_connections_.load(); }
  int64_t requests_in_flight() const { return in_flight_.load(); }

 private:
  struct Impl;
  HttpServerOptions options_;
  Handler handler_;
  std::unique_ptr<Impl> impl_;
  uint16_t bound_port_ = 0;
  std::atomic<int64_t> open_connections_{0};
  std::atomic<int64_t> in_flight_{0};
};

}  // namespace kiln::server
