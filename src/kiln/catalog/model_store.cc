#include "kiln/catalog/model_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "kiln/base/digest.h"
#include "kiln/catalog/http_fetch.h"
#include "kiln/catalog/model_source.h"
#include "kiln/catalog/oci_source.h"

namespace kiln::catalog {
namespace {

namespace fs = std::filesystem;

constexpr const char* kRecord = ".kiln-model.json";

std::string Sanitize(std::string s) {
  for (char& c : s) {
    const bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_';
    if (!ok) c = '_';
  }
  if (s.empty() || s == "." || s == "..") s = "_" + s;
  return s;
}

// "<name>:<version>" as the store's two folder names.
std::pair<std::string, std::string> NameVersion(const Entry& e) {
  const size_t colon = e.id.rfind(':');
  if (colon == std::string::npos) {
    return {Sanitize(e.id), Sanitize(e.model_version.empty() ? "1" : e.model_version)};
  }
  return {Sanitize(e.id.substr(0, colon)), Sanitize(e.id.substr(colon + 1))};
}

std::string NowUtc() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

// An exclusive flock on a file, held while the object lives; released by the kernel if the
// process dies.
class FileLock {
 public:
  static Result<FileLock> Acquire(const fs::path& path, PullProgress* progress,
                                  const std::string& what) {
    std::error_code ec;
    fs::create_directories(path.parent_path(), ec);
    const int fd = ::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
    if (fd < 0) return Status::IoError(path.string() + ": cannot be opened to lock");
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      if (progress) progress->Message("waiting for another pull of " + what + " to finish");
      if (::flock(fd, LOCK_EX) != 0) {
        ::close(fd);
        return Status::IoError(path.string() + ": cannot be locked");
      }
    }
    return FileLock(fd);
  }
  FileLock(FileLock&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  ~FileLock() {
    if (fd_ >= 0) ::close(fd_);
  }

 private:
  explicit FileLock(int fd) : fd_(fd) {}
  int fd_;
};

Result<std::string> GitBlobSha1(const fs::path& file) {
  std::error_code ec;
  const auto size = fs::file_size(file, ec);
  if (ec) return Status::IoError(file.string() + ": " + ec.message());
  Digest d(Digest::Kind::kSha1);
  const std::string header = "blob " + std::to_string(size);
  d.Update(header.data(), header.size() + 1);  // with its terminating NUL
  std::ifstream in(file, std::ios::binary);
  std::vector<char> buffer(1 << 20);
  while (in) {
    in.read(buffer.data(), buffer.size());
    d.Update(buffer.data(), static_cast<size_t>(in.gcount()));
  }
  return d.HexFinal();
}

// Checks a fetched file against what its source states; "" when it matches, else why not.
Result<std::string> Verify(const RemoteFile& f, const fs::path& file, std::string* checked) {
  std::error_code ec;
  const int64_t size = static_cast<int64_t>(fs::file_size(file, ec));
  if (ec) return Status::IoError(file.string() + ": " + ec.message());
  if (f.size >= 0 && size != f.size) {
    return "it has " + std::to_string(size) + " bytes, not the " + std::to_string(f.size) +
           " stated";
  }
  if (!f.sha256.empty()) {
    Result<std::string> got = Sha256File(file.string());
    if (!got.ok()) return got.status();
    std::string want = f.sha256;
    std::transform(want.begin(), want.end(), want.begin(), ::tolower);
    if (*got != want) return "its SHA-256 is " + *got + ", not " + want;
    *checked = "sha256 ok";
    return std::string();
  }
  if (!f.git_blob_sha1.empty()) {
    Result<std::string> got = GitBlobSha1(file);
    if (!got.ok()) return got.status();
    if (*got != f.git_blob_sha1) return "its git blob id is " + *got + ", not " + f.git_blob_sha1;
    *checked = "git blob id ok";
    return std::string();
  }
  *checked = "no digest stated";
  return std::string();
}

bool Retryable(long status) { return status == 408 || status == 429 || status >= 500; }

// Fetches one file into `dir` (as <path>.part, resumed where it stopped, then renamed to <path>)
// and checks it.
Status FetchFile(const RemoteFile& f, const fs::path& dir, const PullOptions& o,
                 PullProgress& progress) {
  const fs::path target = dir / f.path;
  const fs::path part = target.string() + ".part";
  std::error_code ec;
  fs::create_directories(target.parent_path(), ec);
  std::string checked;
  if (fs::exists(target, ec)) {  // fetched by an earlier, interrupted pull
    Result<std::string> why = Verify(f, target, &checked);
    if (why.ok() && why->empty()) {
      progress.FileStarted(f.path, f.size, f.size >= 0 ? f.size : 0);
      progress.FileDone(f.path, checked + ", from an earlier pull");
      return Status::Ok();
    }
    fs::remove(target, ec);
  }
  std::string last_error;
  bool complete = false;
  for (int attempt = 1; attempt <= o.attempts && !complete; ++attempt) {
    if (attempt > 1) {
      progress.Message(f.path + ": " + last_error + "; attempt " + std::to_string(attempt) +
                       " of " + std::to_string(o.attempts) + " resumes it");
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min(5000, 200 << (attempt - 2))));
    }
    int64_t offset = fs::exists(part, ec) ? static_cast<int64_t>(fs::file_size(part, ec)) : 0;
    if (f.size >= 0 && offset > f.size) {
      fs::remove(part, ec);
      offset = 0;
    }
    if (attempt == 1) progress.FileStarted(f.path, f.size, offset);
    if (f.size >= 0 && offset == f.size && offset > 0) {
      complete = true;
      break;
    }
    std::FILE* out = std::fopen(part.c_str(), offset > 0 ? "r+b" : "wb");
    if (!out) return Status::IoError(part.string() + ": cannot be written");
    std::fseek(out, 0, SEEK_END);
    bool first = true;
    bool write_failed = false;
    Result<FetchResult> r =
        HttpFetch(f.url, f.headers, offset, [&](int64_t start, const char* data, size_t n) {
          if (first) {
            first = false;
            if (start != offset) {  // the server sent the whole file: start over
              progress.Restarted(offset);
              if (::ftruncate(fileno(out), 0) != 0) return !(write_failed = true);
              std::fseek(out, 0, SEEK_SET);
              offset = 0;
            }
          }
          if (std::fwrite(data, 1, n, out) != n) return !(write_failed = true);
          progress.Bytes(static_cast<int64_t>(n));
          return true;
        });
    const bool flushed = std::fflush(out) == 0 && ::fsync(fileno(out)) == 0;
    std::fclose(out);
    if (write_failed || !flushed) return Status::IoError(part.string() + ": write failed");
    if (!r.ok()) {
      last_error = r.status().message();
      continue;
    }
    if (r->status == 416) {  // the part is not a prefix the server can continue: start over
      fs::remove(part, ec);
      last_error = "the server could not resume it (HTTP 416)";
      continue;
    }
    if (Retryable(r->status)) {
      last_error = "HTTP " + std::to_string(r->status);
      continue;
    }
    if (r->status >= 400) {
      std::string body = r->error_body.substr(0, 200);
      return Status::NotFound("GET " + f.url + " answered HTTP " + std::to_string(r->status) +
                              (body.empty() ? "" : ": " + body));
    }
    const int64_t have = static_cast<int64_t>(fs::file_size(part, ec));
    if (f.size >= 0 && have < f.size) {
      last_error =
          "the body ended at byte " + std::to_string(have) + " of " + std::to_string(f.size);
      continue;
    }
    complete = true;
  }
  if (!complete) {
    return Status::Unavailable(f.path + " from " + f.url + ": gave up after " +
                               std::to_string(o.attempts) + " attempts (" + last_error +
                               "); the part fetched is kept and the next pull resumes it");
  }
  Result<std::string> why = Verify(f, part, &checked);
  if (!why.ok()) return why.status();
  if (!why->empty()) {
    fs::remove(part, ec);
    return Status::InvalidArgument(f.path + " from " + f.url + ": " + *why +
                                   "; it was deleted and nothing was installed");
  }
  fs::rename(part, target, ec);
  if (ec) return Status::IoError(target.string() + ": " + ec.message());
  progress.FileDone(f.path, checked);
  return Status::Ok();
}

// The one top-level file or folder of a model's folder, or the folder itself.
std::string ServePath(const fs::path& folder) {
  std::vector<fs::path> top;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(folder, ec)) {
    if (e.path().filename() != kRecord) top.push_back(e.path().filename());
  }
  return top.size() == 1 ? top[0].string() : ".";
}

std::optional<StoredModel> ReadRecord(const fs::path& folder) {
  std::ifstream in(folder / kRecord);
  if (!in) return std::nullopt;
  const nlohmann::json r = nlohmann::json::parse(in, nullptr, false);
  if (!r.is_object()) return std::nullopt;
  StoredModel m;
  m.id = r.value("id", "");
  m.alias = r.value("alias", "");
  m.uri = r.value("uri", "");
  m.revision = r.value("revision", "");
  m.pulled_at = r.value("pulledAt", "");
  m.bytes = r.value("bytes", int64_t{0});
  m.folder = folder.string();
  const std::string serve = r.value("serve", ".");
  m.path = serve == "." ? folder.string() : (folder / serve).string();
  if (r.contains("files") && r["files"].is_array()) {
    m.files = nlohmann::ordered_json::parse(r["files"].dump());
  }
  return m;
}

}  // namespace

ModelStore::ModelStore(std::string home) : home_(std::move(home)) {}

std::string ModelStore::FolderFor(const Entry& entry) const {
  Result<Source> source = ParseSource(entry.uri);
  if (source.ok() && source->kind == Source::Kind::kStore && !entry.uri.empty()) {
    return (fs::path(home_) / entry.uri).string();
  }
  auto [name, version] = NameVersion(entry);
  return (fs::path(home_) / "models" / name / version).string();
}

std::optional<StoredModel> ModelStore::Record(const Entry& entry) const {
  Result<Source> source = ParseSource(entry.uri);
  if (!source.ok() || !IsRemote(*source)) return std::nullopt;
  return ReadRecord(FolderFor(entry));
}

std::optional<std::string> ModelStore::InstalledPath(const Entry& entry) const {
  Result<Source> source = ParseSource(entry.uri);
  if (!source.ok()) return std::nullopt;
  std::error_code ec;
  if (!IsRemote(*source)) {
    if (entry.uri.empty()) return std::nullopt;
    const std::string path = FolderFor(entry);
    if (fs::exists(path, ec)) return path;
    return std::nullopt;
  }
  std::optional<StoredModel> record = ReadRecord(FolderFor(entry));
  if (!record) return std::nullopt;
  return record->path;
}

std::vector<StoredModel> ModelStore::List() const {
  std::vector<StoredModel> models;
  std::error_code ec;
  for (const auto& name : fs::directory_iterator(fs::path(home_) / "models", ec)) {
    if (!name.is_directory() || name.path().filename().string().front() == '.') continue;
    for (const auto& version : fs::directory_iterator(name.path(), ec)) {
      if (!version.is_directory()) continue;
      if (std::optional<StoredModel> m = ReadRecord(version.path())) models.push_back(*m);
    }
  }
  std::sort(models.begin(), models.end(),
            [](const StoredModel& a, const StoredModel& b) { return a.id < b.id; });
  return models;
}

Result<std::string> ModelStore::Pull(const Entry& entry, const PullOptions& options) const {
  Result<Source> source = ParseSource(entry.uri);
  if (!source.ok()) return source.status().WithContext(entry.id);
  if (!IsRemote(*source)) {
    if (std::optional<std::string> path = InstalledPath(entry)) return *path;
    return Status::NotFound(entry.id + ": its files belong at " + FolderFor(entry) +
                            " in the model store, and it names no source to fetch them from");
  }
  if (std::optional<std::string> path = InstalledPath(entry)) return *path;
  PullProgress progress(options.out, options.style, entry.id, 0, 0);
  auto [name, version] = NameVersion(entry);
  const fs::path models = fs::path(home_) / "models";
  Result<FileLock> lock =
      FileLock::Acquire(models / ".locks" / (name + "@" + version + ".lock"), &progress, entry.id);
  if (!lock.ok()) return lock.status();
  // Another process may have finished the same pull while this one waited.
  if (std::optional<std::string> path = InstalledPath(entry)) {
    progress.Message(entry.id + " is already in the store");
    return *path;
  }
  Result<Listing> listing = ListFiles(*source, entry.sha256);
  if (!listing.ok()) return listing.status().WithContext("pulling " + entry.id);
  int64_t total = 0;
  for (const RemoteFile& f : listing->files)
    total = f.size >= 0 && total >= 0 ? total + f.size : -1;
  PullProgress files_progress(options.out, options.style, entry.id,
                              static_cast<int>(listing->files.size()), std::max<int64_t>(total, 0));
  const fs::path partial = models / ".partial" / name / version;
  std::error_code ec;
  fs::create_directories(partial, ec);
  if (ec) return Status::IoError(partial.string() + ": " + ec.message());

  std::atomic<size_t> next{0};
  std::mutex mu;
  Status failure;
  auto work = [&] {
    for (size_t i; (i = next++) < listing->files.size();) {
      {
        std::lock_guard<std::mutex> l(mu);
        if (!failure.ok()) return;
      }
      Status s = FetchFile(listing->files[i], partial, options, files_progress);
      if (!s.ok()) {
        std::lock_guard<std::mutex> l(mu);
        if (failure.ok()) failure = s;
      }
    }
  };
  const int threads =
      std::max(1, std::min<int>(options.parallel, static_cast<int>(listing->files.size())));
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (std::thread& t : pool) t.join();
  files_progress.Finish();
  if (!failure.ok()) return failure.WithContext("pulling " + entry.id);

  nlohmann::ordered_json files = nlohmann::ordered_json::array();
  int64_t bytes = 0;
  for (const RemoteFile& f : listing->files) {
    const fs::path file = partial / f.path;
    const int64_t size = static_cast<int64_t>(fs::file_size(file, ec));
    bytes += size;
    nlohmann::ordered_json o{{"path", f.path}, {"size", size}};
    if (!f.sha256.empty()) o["sha256"] = f.sha256;
    if (!f.git_blob_sha1.empty()) o["gitBlobId"] = f.git_blob_sha1;
    if (f.unpack_tar_gz) o["unpacked"] = true;
    files.push_back(std::move(o));
  }
  for (const RemoteFile& f : listing->files) {
    if (!f.unpack_tar_gz) continue;
    const fs::path archive = partial / f.path;
    const fs::path packed = partial / ".packed";
    fs::create_directories(packed, ec);
    fs::rename(archive, packed / f.path, ec);
    if (ec) return Status::IoError(archive.string() + ": " + ec.message());
    if (Status s = UnpackTarGz((packed / f.path).string(), partial.string()); !s.ok()) {
      fs::remove_all(packed, ec);
      return s.WithContext("pulling " + entry.id);
    }
    fs::remove_all(packed, ec);
  }
  nlohmann::ordered_json record{{"id", entry.id},
                                {"alias", entry.alias},
                                {"uri", entry.uri},
                                {"revision", listing->revision},
                                {"serve", ServePath(partial)},
                                {"bytes", bytes},
                                {"pulledAt", NowUtc()},
                                {"files", files}};
  {
    std::ofstream out(partial / kRecord);
    out << record.dump(2) << "\n";
    if (!out) return Status::IoError((partial / kRecord).string() + ": cannot be written");
  }
  const fs::path folder = FolderFor(entry);
  fs::create_directories(folder.parent_path(), ec);
  fs::remove_all(folder, ec);  // a folder without a record is not a model
  fs::rename(partial, folder, ec);
  if (ec)
    return Status::IoError("moving " + partial.string() + " to " + folder.string() + ": " +
                           ec.message());
  std::optional<std::string> path = InstalledPath(entry);
  if (!path) return Status::Internal(folder.string() + ": the pulled model is not readable");
  return *path;
}

Status ModelStore::Remove(const Entry& entry) const {
  auto [name, version] = NameVersion(entry);
  const fs::path models = fs::path(home_) / "models";
  Result<FileLock> lock =
      FileLock::Acquire(models / ".locks" / (name + "@" + version + ".lock"), nullptr, entry.id);
  if (!lock.ok()) return lock.status();
  const fs::path folder = FolderFor(entry);
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(folder, ec))) {
    return Status::NotFound(entry.id + " is not in the model store (" + folder.string() + ")");
  }
  // Out of sight first, so no reader finds half a model.
  const fs::path trash = models / ".partial" /
                         (".removing-" + name + "-" + version + "-" + std::to_string(::getpid()));
  fs::create_directories(trash.parent_path(), ec);
  fs::rename(folder, trash, ec);
  if (ec) return Status::IoError(folder.string() + ": " + ec.message());
  fs::remove_all(trash, ec);
  if (ec) return Status::IoError(trash.string() + ": " + ec.message());
  fs::remove(folder.parent_path(), ec);  // the name's folder, when no version is left
  return Status::Ok();
}

}  // namespace kiln::catalog
