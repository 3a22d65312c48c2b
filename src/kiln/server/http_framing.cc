#include "kiln/server/http_framing.h"

#include <algorithm>
#include <boost/asio/error.hpp>
#include <cctype>
#include <string_view>

namespace kiln::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

namespace {

std::string Lowercase(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

}  // namespace

void LimitParser(RequestParser& parser, size_t max_body_bytes) {
  parser.body_limit(max_body_bytes);
  parser.header_limit(kMaxHeaderBytes);
}

std::optional<FramingError> FramingErrorFor(const beast::error_code& ec, size_t max_body_bytes) {
  if (ec == http::error::end_of_stream || ec == asio::error::connection_reset ||
      ec == beast::error::timeout || ec == asio::error::operation_aborted) {
    return std::nullopt;
  }
  if (ec == http::error::body_limit) {
    return FramingError{
        413,
        "request body is larger than the limit of " + std::to_string(max_body_bytes) + " bytes",
        true};
  }
  if (ec == http::error::partial_message || ec == asio::error::eof) {
    return FramingError{400, "the request ended before its body was complete", false};
  }
  return FramingError{400, "malformed HTTP request: " + ec.message(), false};
}

HttpRequest ToHttpRequest(http::request<http::string_body>&& message) {
  HttpRequest request;
  request.method = std::string(message.method_string());
  request.target = std::string(message.target());
  request.path = request.target.substr(0, request.target.find('?'));
  for (const auto& field : message) {
    request.headers[Lowercase(field.name_string())] = std::string(field.value());
  }
  request.body = std::move(message.body());
  return request;
}

}  // namespace kiln::server
