// How HttpServer reads requests off the wire: Boost.Beast's request parser under Kiln's limits,
// the reply owed to a request that cannot be read, and the parsed message as an HttpRequest.
// Kept apart from the sockets so that the framing can be driven byte by byte (the HTTP fuzz
// target does) exactly as the server configures it.
#pragma once

#include <boost/beast/http.hpp>
#include <cstddef>
#include <optional>
#include <string>

#include "kiln/server/http_server.h"

namespace kiln::server {

using RequestParser = boost::beast::http::request_parser<boost::beast::http::string_body>;

// Longest request line and headers together.
inline constexpr size_t kMaxHeaderBytes = 64 * 1024;

// Applies the body limit and kMaxHeaderBytes to a fresh parser.
void LimitParser(RequestParser& parser, size_t max_body_bytes);

struct FramingError {
  int status;           // 4xx
  std::string message;  // for an OpenAI-style error body
  // The client may still be sending a body the server will not read: drain it for a moment
  // before closing, so the client reads the reply instead of a reset.
  bool drain_before_close;
};

// The reply to a failed read of a request, or nullopt when there is nobody to answer (the
// client closed between requests, reset the connection or timed out).
std::optional<FramingError> FramingErrorFor(const boost::beast::error_code& ec,
                                            size_t max_body_bytes);

// The parsed message as handlers see it: header names lowercased, the path without its query.
HttpRequest ToHttpRequest(boost::beast::http::request<boost::beast::http::string_body>&& message);

}  // namespace kiln::server
