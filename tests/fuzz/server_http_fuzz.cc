// Fuzzes the HTTP request framing: raw bytes from a client go through Boost.Beast's request
// parser exactly as HttpServer configures it (its header and body limits), arriving in pieces
// of a size the input chooses, with pipelined requests read one after another until the input
// ends. Nothing may crash; every request that cannot be read must get a 4xx reply (only a
// connection closed between requests goes unanswered), and every request that can be read must
// convert into the HttpRequest handlers see.
#include <algorithm>
#include <boost/beast/core/flat_buffer.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "kiln/server/http_framing.h"

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
using kiln::server::FramingError;
using kiln::server::FramingErrorFor;
using kiln::server::HttpRequest;
using kiln::server::HttpServerOptions;
using kiln::server::RequestParser;

void Check(bool condition) {
  if (!condition) std::abort();
}

// Reads requests from `wire` in pieces of `piece` bytes, as the server's read loop does.
void Serve(std::string_view wire, size_t piece, size_t max_body_bytes) {
  beast::flat_buffer buffer;
  for (;;) {
    RequestParser parser;
    kiln::server::LimitParser(parser, max_body_bytes);
    beast::error_code ec;
    while (!parser.is_done()) {
      size_t used = 0;
      if (buffer.size() > 0) {
        used = parser.put(buffer.data(), ec);
        buffer.consume(used);
        if (ec == http::error::need_more) {
          ec = {};
          used = 0;
        }
        if (ec) break;
      }
      if (used > 0) continue;
      if (wire.empty()) {  // the client closed its side
        if (parser.got_some()) {
          parser.put_eof(ec);
        } else {
          ec = http::error::end_of_stream;
        }
        break;
      }
      const size_t n = std::min(piece, wire.size());
      buffer.commit(
          boost::asio::buffer_copy(buffer.prepare(n), boost::asio::buffer(wire.data(), n)));
      wire.remove_prefix(n);
    }
    if (ec) {
      std::optional<FramingError> error = FramingErrorFor(ec, max_body_bytes);
      if (!error) {
        // Unanswered only when the connection closed before a new request began.
        Check(ec == http::error::end_of_stream && !parser.got_some());
      } else {
        Check(error->status >= 400 && error->status < 500 && !error->message.empty());
      }
      return;
    }
    Check(parser.is_done());
    http::request<http::string_body> message = parser.release();
    const bool keep_alive = message.keep_alive();
    HttpRequest request = kiln::server::ToHttpRequest(std::move(message));
    Check(request.path.size() <= request.target.size());
    Check(request.body.size() <= max_body_bytes);
    if (!keep_alive) return;  // the server closes after answering
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  // The first byte picks how the bytes arrive: all at once, or in pieces of 1 to 127 bytes.
  const size_t piece = data[0] == 0 ? size : data[0] % 128 + 1;
  std::string_view wire(reinterpret_cast<const char*>(data) + 1, size - 1);
  Serve(wire, piece, HttpServerOptions{}.max_body_bytes);
  // A small body limit, so the 413 path is reached with the fuzzer's short inputs.
  Serve(wire, piece, 16);
  return 0;
}
