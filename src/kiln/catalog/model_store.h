// The model store: $KILN_HOME (default ~/.kiln) holding each model's files.
//
//   models/<path>                  an entry whose uri is a store path (what setup makes)
//   models/<name>/<version>/       a pulled entry (id "<name>:<version>"), versions side by side,
//                                  with .kiln-model.json (the entry, its source's revision and
//                                  every file's size and SHA-256)
//   models/.partial/<name>/<version>/   a pull in progress; its *.part files are resumed
//   models/.locks/<name>@<version>.lock  held (flock) by the one process pulling that entry
//
// A pull lists the source's files, fetches them (several at once, each resumed where an earlier
// attempt stopped, retried on transport errors), checks each against the SHA-256 or git blob id
// its source states, unpacks directory layers, then renames the finished folder into place:
// a model is either wholly there or not there. Two processes pulling one model take turns on its
// lock; the second finds the first one's copy.
#pragma once

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "kiln/base/status.h"
#include "kiln/catalog/catalog.h"
#include "kiln/catalog/pull_progress.h"

namespace kiln::catalog {

struct PullOptions {
  int parallel = 4;  // files fetched at once
  int attempts = 5;  // per file, on transport errors and 5xx replies (each resumes)
  std::FILE* out = stderr;
  PullProgress::Style style = PullProgress::Style::kLines;
};

struct StoredModel {
  std::string id;
  std::string alias;
  std::string uri;
  std::string revision;
  std::string folder;  // the model's folder in the store
  std::string path;    // what a runtime is given: the folder, or its one file or folder
  int64_t bytes = 0;
  std::string pulled_at;                                           // ISO 8601, UTC
  nlohmann::ordered_json files = nlohmann::ordered_json::array();  // [{path, size, sha256}]
};

class ModelStore {
 public:
  explicit ModelStore(std::string home);
  const std::string& home() const { return home_; }

  // The folder (or file) an entry's files live at: its store path, or models/<name>/<version>.
  std::string FolderFor(const Entry& entry) const;
  // What a runtime is given for an installed entry; nullopt when it is not in the store.
  std::optional<std::string> InstalledPath(const Entry& entry) const;
  // The store's record of a pulled entry; nullopt for one that is not pulled (or whose files are
  // a store path setup made).
  std::optional<StoredModel> Record(const Entry& entry) const;
  // Every pulled model's record.
  std::vector<StoredModel> List() const;

  // Fetches an entry's files into the store unless they are there; returns the path to serve.
  // Nothing is installed unless every file arrived whole and matched its digest.
  Result<std::string> Pull(const Entry& entry, const PullOptions& options) const;
  // Removes an entry's files (a pulled folder, or a store path); NotFound when absent.
  Status Remove(const Entry& entry) const;

 private:
  std::string home_;
};

}  // namespace kiln::catalog
