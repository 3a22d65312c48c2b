#include "kiln/catalog/http_fetch.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <mutex>

namespace kiln::catalog {
namespace {

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Easy {
  CURL* curl = nullptr;
  curl_slist* headers = nullptr;
  char error[CURL_ERROR_SIZE] = {0};
  ~Easy() {
    curl_slist_free_all(headers);
    if (curl) curl_easy_cleanup(curl);
  }
};

void Configure(Easy& e, const std::string& url, const std::vector<std::string>& headers) {
  GlobalInit();
  e.curl = curl_easy_init();
  curl_easy_setopt(e.curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(e.curl, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(e.curl, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(e.curl, CURLOPT_USERAGENT, "kiln");
  curl_easy_setopt(e.curl, CURLOPT_ERRORBUFFER, e.error);
  curl_easy_setopt(e.curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e.curl, CURLOPT_CONNECTTIMEOUT, 30L);
  // A transfer that moves less than a byte a second for a minute has stalled: give up (and
  // let the caller resume) rather than hang.
  curl_easy_setopt(e.curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(e.curl, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(e.curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e.curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  for (const std::string& h : headers) e.headers = curl_slist_append(e.headers, h.c_str());
  if (e.headers) curl_easy_setopt(e.curl, CURLOPT_HTTPHEADER, e.headers);
}

Status TransportError(const Easy& e, CURLcode code, const std::string& url) {
  std::string detail = e.error[0] ? e.error : curl_easy_strerror(code);
  return Status::Unavailable("GET " + url + ": " + detail);
}

struct GetState {
  HttpReply* reply;
  int64_t max_body;
  bool too_big = false;
};

size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  auto* headers = static_cast<std::map<std::string, std::string>*>(user);
  std::string line(data, size * n);
  if (line.rfind("HTTP/", 0) == 0) headers->clear();  // a new response (after a redirect)
  const size_t colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    std::transform(name.begin(), name.end(), name.begin(), ::tolower);
    std::string value = line.substr(colon + 1);
    while (!value.empty() && std::isspace(static_cast<unsigned char>(value.front())))
      value.erase(0, 1);
    while (!value.empty() && std::isspace(static_cast<unsigned char>(value.back())))
      value.pop_back();
    (*headers)[name] = value;
  }
  return size * n;
}

size_t OnBody(char* data, size_t size, size_t n, void* user) {
  auto* s = static_cast<GetState*>(user);
  if (static_cast<int64_t>(s->reply->body.size() + size * n) > s->max_body) {
    s->too_big = true;
    return 0;
  }
  s->reply->body.append(data, size * n);
  return size * n;
}

struct FetchState {
  CURL* curl;
  int64_t offset;
  const std::function<bool(int64_t, const char*, size_t)>* write;
  long status = 0;
  FetchResult* result;
  bool stopped = false;
};

size_t OnFetchBody(char* data, size_t size, size_t n, void* user) {
  auto* s = static_cast<FetchState*>(user);
  if (s->status == 0) curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &s->status);
  if (s->status >= 400) {
    if (s->result->error_body.size() < 4096) s->result->error_body.append(data, size * n);
    return size * n;
  }
  const int64_t start = s->status == 206 ? s->offset : 0;
  if (!(*s->write)(start, data, size * n)) {
    s->stopped = true;
    return 0;
  }
  return size * n;
}

struct PostState {
  CURL* curl;
  const std::function<void(const char*, size_t)>* on_data;
  const std::function<bool()>* stop;
  StreamResult* result;
  long status = 0;
};

size_t OnPostBody(char* data, size_t size, size_t n, void* user) {
  auto* s = static_cast<PostState*>(user);
  if (s->status == 0) curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &s->status);
  if (s->status >= 400) {
    if (s->result->error_body.size() < 4096) s->result->error_body.append(data, size * n);
  } else {
    (*s->on_data)(data, size * n);
  }
  return size * n;
}

int OnPostProgress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* s = static_cast<PostState*>(user);
  if ((*s->stop)()) {
    s->result->stopped = true;
    return 1;
  }
  return 0;
}

}  // namespace

Result<HttpReply> HttpGet(const std::string& url, const std::vector<std::string>& headers,
                          int64_t max_body) {
  Easy e;
  Configure(e, url, headers);
  HttpReply reply;
  GetState state{&reply, max_body};
  curl_easy_setopt(e.curl, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(e.curl, CURLOPT_HEADERDATA, &reply.headers);
  curl_easy_setopt(e.curl, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(e.curl, CURLOPT_WRITEDATA, &state);
  const CURLcode code = curl_easy_perform(e.curl);
  if (state.too_big) {
    return Status::InvalidArgument("GET " + url + ": the reply is over " +
                                   std::to_string(max_body) + " bytes");
  }
  if (code != CURLE_OK) return TransportError(e, code, url);
  curl_easy_getinfo(e.curl, CURLINFO_RESPONSE_CODE, &reply.status);
  char* effective = nullptr;
  curl_easy_getinfo(e.curl, CURLINFO_EFFECTIVE_URL, &effective);
  reply.url = effective ? effective : url;
  return reply;
}

Result<FetchResult> HttpFetch(
    const std::string& url, const std::vector<std::string>& headers, int64_t offset,
    const std::function<bool(int64_t start, const char*, size_t)>& write) {
  Easy e;
  // The Range header by hand, not CURLOPT_RESUME_FROM: a server that ignores it and sends the
  // whole body (200) is then a restart, not an error.
  std::vector<std::string> all = headers;
  if (offset > 0) all.push_back("Range: bytes=" + std::to_string(offset) + "-");
  Configure(e, url, all);
  FetchResult result;
  FetchState state{e.curl, offset, &write, 0, &result};
  curl_easy_setopt(e.curl, CURLOPT_WRITEFUNCTION, OnFetchBody);
  curl_easy_setopt(e.curl, CURLOPT_WRITEDATA, &state);
  const CURLcode code = curl_easy_perform(e.curl);
  long status = 0;
  curl_easy_getinfo(e.curl, CURLINFO_RESPONSE_CODE, &status);
  result.status = status;
  if (state.stopped) return Status::IoError("GET " + url + ": stopped");
  if (code != CURLE_OK && status < 400) return TransportError(e, code, url);
  return result;
}

Result<StreamResult> HttpPostStream(const std::string& url, const std::vector<std::string>& headers,
                                    const std::string& body,
                                    const std::function<void(const char*, size_t)>& on_data,
                                    const std::function<bool()>& stop) {
  Easy e;
  std::vector<std::string> all = headers;
  all.push_back("Content-Type: application/json");
  all.push_back("Accept: text/event-stream");
  Configure(e, url, all);
  curl_easy_setopt(e.curl, CURLOPT_LOW_SPEED_LIMIT, 0L);  // a reply may think for a while
  curl_easy_setopt(e.curl, CURLOPT_POSTFIELDS, body.c_str());
  curl_easy_setopt(e.curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  StreamResult result;
  PostState state{e.curl, &on_data, &stop, &result};
  curl_easy_setopt(e.curl, CURLOPT_WRITEFUNCTION, OnPostBody);
  curl_easy_setopt(e.curl, CURLOPT_WRITEDATA, &state);
  curl_easy_setopt(e.curl, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(e.curl, CURLOPT_XFERINFOFUNCTION, OnPostProgress);
  curl_easy_setopt(e.curl, CURLOPT_XFERINFODATA, &state);
  const CURLcode code = curl_easy_perform(e.curl);
  curl_easy_getinfo(e.curl, CURLINFO_RESPONSE_CODE, &result.status);
  if (code != CURLE_OK && !result.stopped) {
    std::string detail = e.error[0] ? e.error : curl_easy_strerror(code);
    return Status::Unavailable("POST " + url + ": " + detail);
  }
  return result;
}

std::string EncodePath(const std::string& path) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : path) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '/') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

}  // namespace kiln::catalog
