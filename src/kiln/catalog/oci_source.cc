#include "kiln/catalog/oci_source.h"

#include <archive.h>
#include <archive_entry.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "kiln/base/base64.h"
#include "kiln/base/digest.h"
#include "kiln/catalog/http_fetch.h"

namespace kiln::catalog {
namespace {

namespace fs = std::filesystem;

constexpr const char* kManifestTypes =
    "Accept: application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.v2+json";

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

std::string BaseUrl(const std::string& registry) {
  const std::string host = registry.substr(0, registry.rfind(':'));
  const bool local = host == "localhost" || host == "127.0.0.1" || host == "[::1]" ||
                     registry == "localhost" || registry == "127.0.0.1";
  return (local || Env("KILN_OCI_PLAIN_HTTP") == "1" ? "http://" : "https://") + registry;
}

// "user:password" for the registry, or "".
std::string Credentials(const std::string& registry) {
  const std::string user = Env("KILN_OCI_USERNAME");
  if (!user.empty()) return user + ":" + Env("KILN_OCI_PASSWORD");
  std::string dir = Env("DOCKER_CONFIG");
  if (dir.empty()) dir = Env("HOME") + "/.docker";
  std::ifstream in(dir + "/config.json");
  if (!in) return "";
  const nlohmann::json config = nlohmann::json::parse(in, nullptr, false);
  if (!config.is_object() || !config.contains("auths") || !config["auths"].is_object()) return "";
  for (const auto& [name, entry] : config["auths"].items()) {
    std::string host = name;
    for (const char* scheme : {"https://", "http://"}) {
      if (host.rfind(scheme, 0) == 0) host = host.substr(std::string(scheme).size());
    }
    host = host.substr(0, host.find('/'));
    if (host != registry || !entry.is_object() || !entry.contains("auth")) continue;
    if (!entry["auth"].is_string()) continue;
    std::optional<std::string> decoded = Base64Decode(entry["auth"].get<std::string>());
    if (decoded) return *decoded;
  }
  return "";
}

// The parameters of a WWW-Authenticate challenge: scheme "Bearer" with realm, service, scope.
std::map<std::string, std::string> ParseChallenge(const std::string& header, std::string* scheme) {
  std::map<std::string, std::string> params;
  const size_t space = header.find(' ');
  *scheme = header.substr(0, space);
  size_t at = space == std::string::npos ? header.size() : space + 1;
  while (at < header.size()) {
    while (at < header.size() && (header[at] == ' ' || header[at] == ',')) ++at;
    const size_t eq = header.find('=', at);
    if (eq == std::string::npos) break;
    const std::string key = header.substr(at, eq - at);
    std::string value;
    at = eq + 1;
    if (at < header.size() && header[at] == '"') {
      const size_t close = header.find('"', at + 1);
      value =
          header.substr(at + 1, close == std::string::npos ? std::string::npos : close - at - 1);
      at = close == std::string::npos ? header.size() : close + 1;
    } else {
      const size_t comma = header.find(',', at);
      value = header.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
      at = comma == std::string::npos ? header.size() : comma;
    }
    params[key] = value;
  }
  return params;
}

std::string QueryEscape(const std::string& s) {
  std::string out = EncodePath(s);
  std::string escaped;
  for (char c : out) escaped += c == '/' ? std::string("%2F") : std::string(1, c);
  return escaped;
}

// The Authorization header a 401 challenge asks for, or an error saying what is missing.
Result<std::string> Authorize(const Source& s, const HttpReply& challenge) {
  const std::string creds = Credentials(s.registry);
  std::string scheme;
  auto params = ParseChallenge(
      challenge.headers.count("www-authenticate") ? challenge.headers.at("www-authenticate") : "",
      &scheme);
  for (char& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (scheme == "basic") {
    if (creds.empty()) {
      return Status::InvalidArgument(s.uri +
                                     ": the registry asks for credentials (set "
                                     "KILN_OCI_USERNAME and KILN_OCI_PASSWORD, or oras login)");
    }
    return "Authorization: Basic " + Base64Encode(creds);
  }
  if (scheme != "bearer" || !params.count("realm")) {
    return Status::InvalidArgument(s.uri +
                                   ": the registry answered 401 without a challenge "
                                   "Kiln knows");
  }
  std::string url = params["realm"];
  url += url.find('?') == std::string::npos ? "?" : "&";
  if (params.count("service")) url += "service=" + QueryEscape(params["service"]) + "&";
  url += "scope=" + QueryEscape(params.count("scope") ? params["scope"]
                                                      : "repository:" + s.repository + ":pull");
  std::vector<std::string> headers;
  if (!creds.empty()) headers.push_back("Authorization: Basic " + Base64Encode(creds));
  Result<HttpReply> token = HttpGet(url, headers);
  if (!token.ok()) return token.status();
  if (token->status != 200) {
    return Status::InvalidArgument(s.uri + ": the registry's token service answered HTTP " +
                                   std::to_string(token->status) +
                                   (creds.empty() ? " (no credentials were given)" : ""));
  }
  const nlohmann::json doc = nlohmann::json::parse(token->body, nullptr, false);
  for (const char* key : {"token", "access_token"}) {
    if (doc.is_object() && doc.contains(key) && doc[key].is_string()) {
      return "Authorization: Bearer " + doc[key].get<std::string>();
    }
  }
  return Status::InvalidArgument(s.uri + ": the registry's token service gave no token");
}

bool SafeEntry(const std::string& path) {
  if (path.empty() || path.front() == '/') return false;
  size_t at = 0;
  while (at <= path.size()) {
    size_t end = path.find('/', at);
    if (end == std::string::npos) end = path.size();
    if (path.compare(at, end - at, "..") == 0 && end - at == 2) return false;
    at = end + 1;
  }
  return true;
}

}  // namespace

Result<Source> ParseOciReference(const std::string& reference, const std::string& uri) {
  Source s;
  s.kind = Source::Kind::kOci;
  s.uri = uri;
  const size_t slash = reference.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 >= reference.size()) {
    return Status::InvalidArgument("'" + uri + "': expected oci://registry/repository[:tag]");
  }
  s.registry = reference.substr(0, slash);
  std::string rest = reference.substr(slash + 1);
  const size_t at = rest.find('@');
  if (at != std::string::npos) {
    s.reference = rest.substr(at + 1);
    rest = rest.substr(0, at);
    if (s.reference.rfind("sha256:", 0) != 0 || s.reference.size() != 71) {
      return Status::InvalidArgument("'" + uri + "': a digest reference is sha256:<64 hex>");
    }
  } else {
    const size_t colon = rest.rfind(':');
    if (colon != std::string::npos && rest.find('/', colon) == std::string::npos) {
      s.reference = rest.substr(colon + 1);
      rest = rest.substr(0, colon);
    } else {
      s.reference = "latest";
    }
  }
  for (char c : rest) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                    c == '-' || c == '/';
    if (!ok) {
      return Status::InvalidArgument("'" + uri +
                                     "': a repository name is lowercase letters, "
                                     "digits and . _ - /");
    }
  }
  if (rest.empty() || s.reference.empty()) {
    return Status::InvalidArgument("'" + uri + "': expected oci://registry/repository[:tag]");
  }
  s.repository = rest;
  return s;
}

Result<Listing> ListOci(const Source& s) {
  const std::string base = BaseUrl(s.registry);
  const std::string url = base + "/v2/" + s.repository + "/manifests/" + s.reference;
  std::vector<std::string> headers = {kManifestTypes};
  Result<HttpReply> reply = HttpGet(url, headers, 4 << 20);
  if (!reply.ok()) return reply.status();
  std::string auth;
  if (reply->status == 401) {
    Result<std::string> a = Authorize(s, *reply);
    if (!a.ok()) return a.status();
    auth = *a;
    headers.push_back(auth);
    reply = HttpGet(url, headers, 4 << 20);
    if (!reply.ok()) return reply.status();
  }
  if (reply->status == 401 || reply->status == 403) {
    return Status::InvalidArgument(s.uri + ": the registry refused the credentials (HTTP " +
                                   std::to_string(reply->status) + ")");
  }
  if (reply->status == 404) {
    return Status::NotFound(s.uri + ": no such repository or tag at " + s.registry);
  }
  if (reply->status != 200) {
    return Status::Unavailable(s.uri + ": " + url + " answered HTTP " +
                               std::to_string(reply->status));
  }
  const std::string digest = "sha256:" + Sha256Hex(reply->body);
  const std::string stated =
      s.reference.rfind("sha256:", 0) == 0
          ? s.reference
          : (reply->headers.count("docker-content-digest") ? reply->headers["docker-content-digest"]
                                                           : "");
  if (!stated.empty() && stated != digest) {
    return Status::InvalidArgument(s.uri + ": the manifest's digest is " + digest + ", not " +
                                   stated);
  }
  const nlohmann::json manifest = nlohmann::json::parse(reply->body, nullptr, false);
  if (!manifest.is_object() || !manifest.contains("layers") || !manifest["layers"].is_array()) {
    const std::string type = manifest.is_object() ? manifest.value("mediaType", "") : "";
    return Status::InvalidArgument(s.uri + ": not an image manifest with layers" +
                                   (type.empty() ? "" : " (it is " + type + ")"));
  }
  Listing listing;
  listing.revision = digest;
  for (const auto& layer : manifest["layers"]) {
    if (!layer.is_object() || !layer.contains("digest") || !layer["digest"].is_string()) {
      return Status::InvalidArgument(s.uri + ": a layer without a digest");
    }
    const std::string layer_digest = layer["digest"];
    if (layer_digest.rfind("sha256:", 0) != 0 || layer_digest.size() != 71) {
      return Status::InvalidArgument(s.uri + ": layer digest '" + layer_digest +
                                     "' is not sha256:<64 hex>");
    }
    std::string title;
    bool unpack = false;
    if (layer.contains("annotations") && layer["annotations"].is_object()) {
      const auto& a = layer["annotations"];
      if (a.contains("org.opencontainers.image.title") &&
          a["org.opencontainers.image.title"].is_string()) {
        title = a["org.opencontainers.image.title"];
      }
      unpack = a.value("io.deis.oras.content.unpack", "") == "true";
    }
    const std::string media = layer.value("mediaType", "");
    if (media.size() >= 8 && media.compare(media.size() - 8, 8, "tar+gzip") == 0) unpack = true;
    if (title.empty() || !SafeEntry(title) || title.find('/') != std::string::npos) {
      return Status::InvalidArgument(s.uri + ": layer " + layer_digest +
                                     " has no usable org.opencontainers.image.title (a file name)");
    }
    RemoteFile f;
    f.path = title;
    f.url = base + "/v2/" + s.repository + "/blobs/" + layer_digest;
    if (!auth.empty()) f.headers.push_back(auth);
    f.sha256 = layer_digest.substr(7);
    if (layer.contains("size") && layer["size"].is_number_integer()) f.size = layer["size"];
    f.unpack_tar_gz = unpack;
    listing.files.push_back(std::move(f));
  }
  if (listing.files.empty()) return Status::NotFound(s.uri + ": the artifact has no layers");
  return listing;
}

Status UnpackTarGz(const std::string& archive_path, const std::string& folder) {
  archive* a = archive_read_new();
  archive_read_support_filter_gzip(a);
  archive_read_support_format_all(a);
  struct Closer {
    archive* a;
    ~Closer() { archive_read_free(a); }
  } closer{a};
  if (archive_read_open_filename(a, archive_path.c_str(), 1 << 16) != ARCHIVE_OK) {
    return Status::InvalidArgument(archive_path + ": " + archive_error_string(a));
  }
  archive_entry* entry = nullptr;
  int r;
  std::vector<char> buffer(1 << 16);
  while ((r = archive_read_next_header(a, &entry)) == ARCHIVE_OK) {
    const std::string name = archive_entry_pathname(entry);
    std::string clean = name;
    while (clean.rfind("./", 0) == 0) clean = clean.substr(2);
    while (!clean.empty() && clean.back() == '/') clean.pop_back();
    if (clean.empty() || clean == ".") continue;
    if (!SafeEntry(clean)) {
      return Status::InvalidArgument(archive_path + ": entry '" + name +
                                     "' would land outside the model's folder");
    }
    const fs::path target = fs::path(folder) / clean;
    std::error_code ec;
    const auto type = archive_entry_filetype(entry);
    if (type == AE_IFDIR) {
      fs::create_directories(target, ec);
      if (ec) return Status::IoError(target.string() + ": " + ec.message());
      continue;
    }
    if (type != AE_IFREG) {
      return Status::InvalidArgument(archive_path + ": entry '" + name +
                                     "' is not a file or a folder (links are not unpacked)");
    }
    fs::create_directories(target.parent_path(), ec);
    std::ofstream out(target, std::ios::binary | std::ios::trunc);
    if (!out) return Status::IoError(target.string() + ": cannot be written");
    la_ssize_t n;
    while ((n = archive_read_data(a, buffer.data(), buffer.size())) > 0)
      out.write(buffer.data(), n);
    if (n < 0) {
      return Status::InvalidArgument(archive_path + ": entry '" + name +
                                     "': " + archive_error_string(a));
    }
    if (!out) return Status::IoError(target.string() + ": write failed");
  }
  if (r != ARCHIVE_EOF) {
    return Status::InvalidArgument(archive_path + ": " + archive_error_string(a));
  }
  return Status::Ok();
}

}  // namespace kiln::catalog
