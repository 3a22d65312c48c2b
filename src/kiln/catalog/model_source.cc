#include "kiln/catalog/model_source.h"

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "kiln/catalog/http_fetch.h"
#include "kiln/catalog/oci_source.h"

namespace kiln::catalog {
namespace {

std::string Env(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// A path inside a model's folder must stay inside it.
bool SafeRelativePath(const std::string& path) {
  if (path.empty() || path.front() == '/' || path.find('\\') != std::string::npos) return false;
  size_t at = 0;
  while (at <= path.size()) {
    size_t end = path.find('/', at);
    if (end == std::string::npos) end = path.size();
    const std::string part = path.substr(at, end - at);
    if (part.empty() || part == "." || part == "..") return false;
    at = end + 1;
  }
  return true;
}

Result<Source> ParseHf(const std::string& uri) {
  Source s;
  s.kind = Source::Kind::kHf;
  s.uri = uri;
  std::string rest = uri.substr(5);
  // org/repo[@revision][/folder]
  const size_t first = rest.find('/');
  if (first == std::string::npos || first == 0) {
    return Status::InvalidArgument("'" + uri + "': expected hf://org/repo[@revision][/folder]");
  }
  size_t end = rest.find('/', first + 1);
  std::string repo = rest.substr(0, end);
  if (end != std::string::npos) s.folder = rest.substr(end + 1);
  while (!s.folder.empty() && s.folder.back() == '/') s.folder.pop_back();
  const size_t at = repo.find('@');
  s.revision = "main";
  if (at != std::string::npos) {
    s.revision = repo.substr(at + 1);
    repo = repo.substr(0, at);
  }
  if (repo.size() <= first + 1 || s.revision.empty() ||
      (!s.folder.empty() && !SafeRelativePath(s.folder))) {
    return Status::InvalidArgument("'" + uri + "': expected hf://org/repo[@revision][/folder]");
  }
  s.repo = repo;
  return s;
}

// Weight formats a repository may carry beside safetensors; with safetensors present, only those
// are fetched (as vLLM does), and never the original checkpoints some repositories add.
bool OtherWeights(const std::string& path) {
  for (const char* ext : {".bin", ".pt", ".pth", ".h5", ".msgpack", ".ot", ".ckpt"}) {
    if (EndsWith(path, ext)) return true;
  }
  return path.rfind("original/", 0) == 0;
}

Result<Listing> ListHf(const Source& s) {
  const std::string endpoint = Env("HF_ENDPOINT", "https://huggingface.co");
  std::vector<std::string> headers;
  const std::string token = Env("HF_TOKEN", "");
  if (!token.empty()) headers.push_back("Authorization: Bearer " + token);
  const std::string api = endpoint + "/api/models/" + EncodePath(s.repo) + "/revision/" +
                          EncodePath(s.revision) + "?blobs=true";
  Result<HttpReply> reply = HttpGet(api, headers);
  if (!reply.ok()) return reply.status();
  if (reply->status == 401 || reply->status == 403) {
    return Status::InvalidArgument(s.uri + ": the Hub refused access (HTTP " +
                                   std::to_string(reply->status) +
                                   "); a gated or private repository needs HF_TOKEN");
  }
  if (reply->status == 404) {
    return Status::NotFound(s.uri + ": no such repository or revision on " + endpoint);
  }
  if (reply->status != 200) {
    return Status::Unavailable(s.uri + ": " + api + " answered HTTP " +
                               std::to_string(reply->status));
  }
  const nlohmann::json info = nlohmann::json::parse(reply->body, nullptr, false);
  if (!info.is_object() || !info.contains("siblings") || !info["siblings"].is_array()) {
    return Status::InvalidArgument(s.uri + ": " + api + " did not answer with a model's files");
  }
  Listing listing;
  listing.revision = info.value("sha", s.revision);
  const std::string prefix = s.folder.empty() ? "" : s.folder + "/";
  bool has_safetensors = false;
  for (const auto& sib : info["siblings"]) {
    const std::string name = sib.value("rfilename", "");
    if (name.rfind(prefix, 0) == 0 && EndsWith(name, ".safetensors")) has_safetensors = true;
  }
  for (const auto& sib : info["siblings"]) {
    if (!sib.is_object() || !sib.contains("rfilename") || !sib["rfilename"].is_string()) continue;
    const std::string name = sib["rfilename"];
    if (name.rfind(prefix, 0) != 0) continue;
    const std::string path = name.substr(prefix.size());
    if (path == ".gitattributes" || (has_safetensors && OtherWeights(path))) continue;
    if (!SafeRelativePath(path)) {
      return Status::InvalidArgument(s.uri + ": the file name '" + name + "' is not a safe path");
    }
    RemoteFile f;
    f.path = path;
    f.url = endpoint + "/" + EncodePath(s.repo) + "/resolve/" + EncodePath(listing.revision) + "/" +
            EncodePath(name);
    f.headers = headers;
    if (sib.contains("size") && sib["size"].is_number_integer()) f.size = sib["size"];
    if (sib.contains("lfs") && sib["lfs"].is_object()) {
      const auto& lfs = sib["lfs"];
      if (lfs.contains("sha256") && lfs["sha256"].is_string()) f.sha256 = lfs["sha256"];
      if (lfs.contains("size") && lfs["size"].is_number_integer()) f.size = lfs["size"];
    } else if (sib.contains("blobId") && sib["blobId"].is_string()) {
      f.git_blob_sha1 = sib["blobId"];
    }
    listing.files.push_back(std::move(f));
  }
  if (listing.files.empty()) {
    return Status::NotFound(s.uri + ": the repository has no files" +
                            (s.folder.empty() ? "" : " under " + s.folder));
  }
  return listing;
}

}  // namespace

Result<Source> ParseSource(const std::string& uri) {
  if (uri.rfind("hf://", 0) == 0) return ParseHf(uri);
  if (uri.rfind("oci://", 0) == 0) return ParseOciReference(uri.substr(6), uri);
  Source s;
  s.uri = uri;
  if (uri.rfind("https://", 0) == 0 || uri.rfind("http://", 0) == 0) {
    s.kind = Source::Kind::kHttp;
    s.path = uri;
    const size_t host = uri.find("://") + 3;
    const size_t slash = uri.find('/', host);
    std::string name = slash == std::string::npos ? "" : uri.substr(uri.rfind('/') + 1);
    name = name.substr(0, name.find_first_of("?#"));
    if (name.empty()) {
      return Status::InvalidArgument("'" + uri + "': an https source names one file");
    }
    return s;
  }
  if (uri.find("://") != std::string::npos) {
    return Status::InvalidArgument("'" + uri +
                                   "': unknown source; expected a path in the model store, "
                                   "https://, hf:// or oci://");
  }
  if (!uri.empty() && !SafeRelativePath(uri)) {
    return Status::InvalidArgument("'" + uri + "': a store path must stay inside the store");
  }
  s.kind = Source::Kind::kStore;
  s.path = uri;
  return s;
}

bool IsRemote(const Source& source) { return source.kind != Source::Kind::kStore; }

Result<Listing> ListFiles(const Source& source, const std::string& sha256) {
  switch (source.kind) {
    case Source::Kind::kStore:
      return Status::InvalidArgument(source.uri + " is in the model store; nothing to fetch");
    case Source::Kind::kHf:
      return ListHf(source);
    case Source::Kind::kOci:
      return ListOci(source);
    case Source::Kind::kHttp: {
      RemoteFile f;
      f.url = source.path;
      std::string name = source.path.substr(source.path.rfind('/') + 1);
      f.path = name.substr(0, name.find_first_of("?#"));
      if (!SafeRelativePath(f.path)) {
        return Status::InvalidArgument(source.uri + ": '" + f.path + "' is not a file name");
      }
      f.sha256 = sha256;
      Listing listing;
      listing.files.push_back(std::move(f));
      listing.revision = sha256;
      return listing;
    }
  }
  return Status::Internal("unknown source kind");
}

}  // namespace kiln::catalog
