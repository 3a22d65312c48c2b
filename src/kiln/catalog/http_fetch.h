// HTTP(S) GETs for the model store, on libcurl: small replies read whole (a Hub file list, an OCI
// manifest) and bodies streamed to a sink, resumed from an offset with a Range request.
// Redirects are followed (the Hub sends large files to a CDN); an Authorization header is not
// sent on to another host. Proxies come from the usual environment variables.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "kiln/base/status.h"

namespace kiln::catalog {

struct HttpReply {
  long status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // names in lowercase; the last value of each
  std::string url;                             // after redirects
};

// A GET whose reply body is kept, up to `max_body` bytes (more is an error). A transport failure
// (no connection, a cut-off reply) is Unavailable naming the URL; any HTTP status is a reply.
Result<HttpReply> HttpGet(const std::string& url, const std::vector<std::string>& headers,
                          int64_t max_body = 64 << 20);

// Streams the body of `url` from byte `offset` (a Range request when offset > 0) to `write`,
// which gets the offset the body starts at (offset when the server answered 206; 0 when it sent
// the whole body with 200, so the caller starts over) and each piece; `write` returns false to
// stop. Returns the HTTP status; for a status of 400 or more nothing is written and the reply
// is in the returned message. Unavailable for a transport failure or a cut-off body (retry).
struct FetchResult {
  long status = 0;
  std::string error_body;  // the start of the body of a reply >= 400
};
Result<FetchResult> HttpFetch(const std::string& url, const std::vector<std::string>& headers,
                              int64_t offset,
                              const std::function<bool(int64_t start, const char*, size_t)>& write);

// A POST of `body` (JSON) whose reply is handed to `on_data` as it arrives (a stream of
// server-sent events); `stop` is polled while the transfer runs and ends it when it returns true
// (FetchResult::stopped). A reply >= 400 is not handed over: its start is in error_body.
struct StreamResult {
  long status = 0;
  bool stopped = false;
  std::string error_body;
};
Result<StreamResult> HttpPostStream(const std::string& url, const std::vector<std::string>& headers,
                                    const std::string& body,
                                    const std::function<void(const char*, size_t)>& on_data,
                                    const std::function<bool()>& stop);

// Percent-encodes a URL path, keeping '/' and unreserved characters.
std::string EncodePath(const std::string& path);

}  // namespace kiln::catalog
