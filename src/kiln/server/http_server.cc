#include "kiln/server/http_server.h"

#include <algorithm>
#include <boost/asio.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <variant>

#include "kiln/server/http_framing.h"

namespace kiln::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::awaitable;
using asio::ip::tcp;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

std::string HttpRequest::Query(std::string_view name) const {
  const size_t q = target.find('?');
  if (q == std::string::npos) return "";
  auto decode = [](std::string_view text) {
    std::string out;
    for (size_t i = 0; i < text.size(); ++i) {
      if (text[i] == '+') {
        out += ' ';
      } else if (text[i] == '%' && i + 2 < text.size() &&
                 std::isxdigit(static_cast<unsigned char>(text[i + 1])) &&
                 std::isxdigit(static_cast<unsigned char>(text[i + 2]))) {
        out += static_cast<char>(std::stoi(std::string(text.substr(i + 1, 2)), nullptr, 16));
        i += 2;
      } else {
        out += text[i];
      }
    }
    return out;
  };
  std::string_view rest = std::string_view(target).substr(q + 1);
  while (!rest.empty()) {
    const size_t amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    const size_t eq = pair.find('=');
    if (decode(pair.substr(0, eq)) == name) {
      return eq == std::string_view::npos ? "" : decode(pair.substr(eq + 1));
    }
    if (amp == std::string_view::npos) break;
    rest = rest.substr(amp + 1);
  }
  return "";
}

std::string HttpRequest::Header(std::string_view name) const {
  auto it = headers.find(std::string(name));
  return it == headers.end() ? std::string() : it->second;
}

namespace {

// Compares in time that depends on the lengths only, not on where the bytes differ.
bool SameKey(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

bool HasApiKey(const HttpRequest& request, const std::string& api_key) {
  if (api_key.empty()) return true;
  std::string key = request.Header("api-key");
  const std::string auth = request.Header("authorization");
  if (auth.rfind("Bearer ", 0) == 0) key = auth.substr(7);
  if (key.empty()) return false;
  // Several keys, comma-separated, are each accepted (a rotation keeps the old one a while).
  bool match = false;
  std::string_view keys = api_key;
  while (true) {
    const size_t comma = keys.find(',');
    const std::string_view one = keys.substr(0, comma);
    if (!one.empty() && SameKey(one, key)) match = true;
    if (comma == std::string_view::npos) break;
    keys.remove_prefix(comma + 1);
  }
  return match;
}

std::string ErrorBody(std::string_view message, std::string_view type, int code) {
  nlohmann::json body = {{"error",
                          {{"message", std::string(message)},
                           {"type", std::string(type)},
                           {"param", nullptr},
                           {"code", code}}}};
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

namespace {

struct RespondAction {
  HttpResponse response;
};
struct StartStreamAction {
  int status;
  std::string content_type;
};
struct WriteAction {
  std::string chunk;
};
struct EndAction {};
using Action = std::variant<RespondAction, StartStreamAction, WriteAction, EndAction>;

// The Exchange of one request on one connection. Producers push actions under a mutex and
// wake the connection's coroutine by cancelling its timer on the connection's strand.
class ConnectionExchange : public Exchange,
                           public std::enable_shared_from_this<ConnectionExchange> {
 public:
  // `strand` is the connection's strand: every wake-up runs serialized with its coroutine.
  explicit ConnectionExchange(asio::any_io_executor strand) : strand_(strand), signal_(strand) {
    signal_.expires_at(asio::steady_timer::time_point::max());
  }

  void Respond(HttpResponse response) override { Push(RespondAction{std::move(response)}); }
  void StartStream(int status, std::string content_type) override {
    Push(StartStreamAction{status, std::move(content_type)});
  }
  void Write(std::string chunk) override { Push(WriteAction{std::move(chunk)}); }
  void End() override { Push(EndAction{}); }

  void OnCancel(std::function<void()> fn) override {
    bool run_now = false;
    {
      std::lock_guard lock(mu_);
      if (cancelled_) {
        run_now = true;
      } else {
        on_cancel_ = std::move(fn);
      }
    }
    if (run_now && fn) fn();
  }
  bool cancelled() const override {
    std::lock_guard lock(mu_);
    return cancelled_;
  }

  // Called on the strand when the client went away.
  void Cancel() {
    std::function<void()> fn;
    {
      std::lock_guard lock(mu_);
      if (cancelled_) return;
      cancelled_ = true;
      fn = std::move(on_cancel_);
    }
    if (fn) fn();
    signal_.cancel();
  }

  std::deque<Action> Take() {
    std::lock_guard lock(mu_);
    return std::exchange(actions_, {});
  }
  bool HasActions() const {
    std::lock_guard lock(mu_);
    return !actions_.empty();
  }
  void Wake() { signal_.cancel(); }
  asio::steady_timer& signal() { return signal_; }

 private:
  void Push(Action action) {
    {
      std::lock_guard lock(mu_);
      actions_.push_back(std::move(action));
    }
    asio::post(strand_, [self = shared_from_this()] { self->signal_.cancel(); });
  }

  asio::any_io_executor strand_;
  asio::steady_timer signal_;
  mutable std::mutex mu_;
  std::deque<Action> actions_;
  bool cancelled_ = false;
  std::function<void()> on_cancel_;
};

}  // namespace

struct HttpServer::Impl {
  asio::io_context io;
  tcp::acceptor acceptor{io};
  // The accept loop and StopAccepting's close run here, never at once: the io threads would
  // otherwise close the acceptor while another of them is completing an accept on it.
  asio::strand<asio::io_context::executor_type> accept_strand{asio::make_strand(io)};
  std::vector<std::thread> threads;
  std::atomic<bool> accepting{false};
  asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
};

HttpServer::HttpServer(HttpServerOptions options, Handler handler)
    : options_(std::move(options)), handler_(std::move(handler)), impl_(std::make_unique<Impl>()) {}

HttpServer::~HttpServer() { Stop(); }

namespace {

struct SessionContext {
  const HttpServerOptions* options;
  const Handler* handler;
  std::atomic<int64_t>* open_connections;
  std::atomic<int64_t>* in_flight;
};

awaitable<void> WriteError(beast::tcp_stream& stream, http::status status,
                           std::string_view message) {
  http::response<http::string_body> res{status, 11};
  res.set(http::field::content_type, "application/json");
  res.set(http::field::connection, "close");
  res.body() = ErrorBody(message, "invalid_request_error", static_cast<int>(status));
  res.prepare_payload();
  stream.expires_after(std::chrono::seconds(10));
  co_await http::async_write(stream, res, kTuple);
}

// After an early error reply, reads and drops what the client is still sending (for a short
// while, up to a cap) before closing, so a client blocked sending a large body gets to read the
// reply instead of a reset connection.
awaitable<void> LingeringClose(beast::tcp_stream& stream) {
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  stream.expires_after(std::chrono::seconds(5));
  static constexpr size_t kMaxDrain = 64 * 1024 * 1024;
  std::vector<char> sink(64 * 1024);
  size_t drained = 0;
  while (drained < kMaxDrain) {
    auto [ec, n] = co_await stream.async_read_some(asio::buffer(sink), kTuple);
    if (ec) break;
    drained += n;
  }
}

// Watches the socket while a reply is pending: a read that ends in EOF or an error means the
// client is gone. A byte that arrives (a pipelined request) is kept for the next read.
awaitable<void> Probe(beast::tcp_stream& stream, std::shared_ptr<ConnectionExchange> exchange,
                      std::string* early_bytes, bool* done) {
  char byte = 0;
  auto [ec, n] = co_await stream.socket().async_read_some(asio::buffer(&byte, 1), kTuple);
  if (!ec && n == 1) {
    early_bytes->push_back(byte);
  } else if (ec != asio::error::operation_aborted) {
    exchange->Cancel();
  }
  *done = true;
  exchange->Wake();
}

// Sends the exchange's reply as the handler produces it. Returns whether the connection can
// carry another request.
awaitable<bool> Pump(beast::tcp_stream& stream, std::shared_ptr<ConnectionExchange> exchange,
                     bool keep_alive, beast::flat_buffer& buffer) {
  stream.expires_never();
  std::string early_bytes;
  bool probe_done = false;
  auto strand = exchange->signal().get_executor();
  asio::co_spawn(strand, Probe(stream, exchange, &early_bytes, &probe_done), asio::detached);

  bool finished = false;
  bool ok = true;
  bool streaming = false;
  while (!finished && ok) {
    for (Action& action : exchange->Take()) {
      if (!ok || finished) break;
      stream.expires_after(std::chrono::seconds(60));
      if (auto* respond = std::get_if<RespondAction>(&action)) {
        http::response<http::string_body> res{static_cast<http::status>(respond->response.status),
                                              11};
        res.set(http::field::content_type, respond->response.content_type);
        for (const auto& [k, v] : respond->response.headers) res.set(k, v);
        res.keep_alive(keep_alive);
        res.body() = std::move(respond->response.body);
        res.prepare_payload();
        auto [ec, n] = co_await http::async_write(stream, res, kTuple);
        ok = !ec;
        finished = true;
      } else if (auto* start = std::get_if<StartStreamAction>(&action)) {
        http::response<http::empty_body> res{static_cast<http::status>(start->status), 11};
        res.set(http::field::content_type, start->content_type);
        res.set(http::field::cache_control, "no-cache");
        res.keep_alive(keep_alive);
        res.chunked(true);
        http::response_serializer<http::empty_body> serializer{res};
        auto [ec, n] = co_await http::async_write_header(stream, serializer, kTuple);
        ok = !ec;
        streaming = true;
      } else if (auto* write = std::get_if<WriteAction>(&action)) {
        if (!streaming || write->chunk.empty()) continue;
        auto [ec, n] = co_await asio::async_write(
            stream, http::make_chunk(asio::buffer(write->chunk)), kTuple);
        ok = !ec;
      } else if (std::holds_alternative<EndAction>(action)) {
        if (streaming) {
          auto [ec, n] = co_await asio::async_write(stream, http::make_chunk_last(), kTuple);
          ok = !ec;
        }
        finished = true;
      }
    }
    if (finished || !ok) break;
    if (exchange->cancelled()) {
      ok = false;
      break;
    }
    if (!exchange->HasActions()) {
      exchange->signal().expires_at(asio::steady_timer::time_point::max());
      co_await exchange->signal().async_wait(kTuple);
    }
  }
  if (!ok) exchange->Cancel();

  // Stop the probe and wait for it, so its byte (if any) lands before the next read.
  if (!probe_done) stream.socket().cancel();
  while (!probe_done) {
    exchange->signal().expires_at(asio::steady_timer::time_point::max());
    co_await exchange->signal().async_wait(kTuple);
  }
  if (!early_bytes.empty()) {
    auto dest = buffer.prepare(early_bytes.size());
    asio::buffer_copy(dest, asio::buffer(early_bytes));
    buffer.commit(early_bytes.size());
  }
  co_return ok&& keep_alive;
}

awaitable<void> Session(tcp::socket socket, SessionContext ctx) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  ctx.open_connections->fetch_add(1);
  for (;;) {
    RequestParser parser;
    LimitParser(parser, ctx.options->max_body_bytes);
    stream.expires_after(ctx.options->read_timeout);
    auto [ec, n] = co_await http::async_read(stream, buffer, parser, kTuple);
    if (ec) {
      std::optional<FramingError> error = FramingErrorFor(ec, ctx.options->max_body_bytes);
      if (error) {
        co_await WriteError(stream, static_cast<http::status>(error->status), error->message);
        if (error->drain_before_close) co_await LingeringClose(stream);
      }
      break;
    }
    http::request<http::string_body> req = parser.release();
    const bool keep_alive = req.keep_alive();
    HttpRequest request = ToHttpRequest(std::move(req));

    auto exchange = std::make_shared<ConnectionExchange>(co_await asio::this_coro::executor);
    ctx.in_flight->fetch_add(1);
    try {
      (*ctx.handler)(request, exchange);
    } catch (const std::exception& e) {
      exchange->Respond({500,
                         "application/json",
                         ErrorBody(std::string("internal error: ") + e.what(), "server_error", 500),
                         {}});
    }
    bool again = co_await Pump(stream, exchange, keep_alive, buffer);
    ctx.in_flight->fetch_sub(1);
    if (!again) break;
  }
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  ctx.open_connections->fetch_sub(1);
}

awaitable<void> Accept(tcp::acceptor& acceptor, SessionContext ctx) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(kTuple);
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
    if (ec) continue;  // e.g. too many open files: keep serving the connections we have
    socket.set_option(tcp::no_delay(true), ec);
    auto strand = asio::make_strand(acceptor.get_executor());
    asio::co_spawn(strand, Session(std::move(socket), ctx), asio::detached);
  }
}

}  // namespace

Status HttpServer::Start() {
  beast::error_code ec;
  auto address = asio::ip::make_address(options_.host, ec);
  if (ec) return Status::InvalidArgument("invalid listen address '" + options_.host + "'");
  tcp::endpoint endpoint(address, options_.port);
  auto& acceptor = impl_->acceptor;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return Status::IoError("cannot listen on " + options_.host + ":" +
                           std::to_string(options_.port) + ": " + ec.message());
  }
  bound_port_ = acceptor.local_endpoint().port();
  impl_->accepting = true;
  SessionContext ctx{&options_, &handler_, &open_connections_, &in_flight_};
  asio::co_spawn(impl_->accept_strand, Accept(acceptor, ctx), asio::detached);
  for (int i = 0; i < std::max(1, options_.io_threads); ++i) {
    impl_->threads.emplace_back([this] { impl_->io.run(); });
  }
  return Status::Ok();
}

void HttpServer::StopAccepting() {
  if (!impl_->accepting.exchange(false)) return;
  asio::post(impl_->accept_strand, [this] {
    beast::error_code ignored;
    impl_->acceptor.close(ignored);
  });
}

bool HttpServer::WaitForIdle(std::chrono::milliseconds deadline) {
  auto until = std::chrono::steady_clock::now() + deadline;
  while (in_flight_.load() > 0) {
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

void HttpServer::Stop() {
  if (impl_->threads.empty()) return;
  StopAccepting();
  impl_->work.reset();
  impl_->io.stop();
  for (auto& t : impl_->threads) t.join();
  impl_->threads.clear();
}

}  // namespace kiln::server
