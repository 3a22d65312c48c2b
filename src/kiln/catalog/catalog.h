// The model catalog: entries that say what a model is, which runtime serves it and where its files
// come from. The JSON format (docs/catalog-format.md, docs/catalog.schema.json) is Foundry Local's
// catalog.json ({"models": [...]}, each entry with id, alias, displayName, publisher, license,
// task, source, framework, modelVersion, variants[], supportedCompute), so such a file loads
// unchanged, plus Kiln's fields (uri, sha256, contextLength, supportsToolCalling, ...).
//
// The framework decides the runtime: ONNX is onnx-genai (a predictive task: the predictive
// server), vllm is vllm. The same model in two runtimes is two entries.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/base/status.h"

namespace kiln::catalog {

struct Variant {
  std::string id;
  std::string compute;  // "cpu" or "gpu"
  std::string execution_provider;
  int64_t file_size_bytes = 0;  // 0: not stated
};

struct Entry {
  std::string id;  // "<name>-<device>:<version>"
  std::string alias;
  std::string display_name;
  std::string description;
  std::string publisher;
  std::string license;
  std::string task;       // chat-completion, text-completion, predictive
  std::string source;     // where the entry came from (foundry-local, foundry, kiln, ...)
  std::string framework;  // "onnx" or "vllm" (the file may say "ONNX")
  std::string model_version;
  std::vector<Variant> variants;
  std::vector<std::string> supported_compute;  // "cpu", "gpu"
  // Kiln's fields.
  std::string uri;  // a path in the model store ($KILN_HOME), or hf://, https://, oci://
  std::string sha256;
  int64_t context_length = 0;
  bool supports_tool_calling = false;

  // "onnx-genai", "vllm" or "predictive".
  std::string Runtime() const;
  // The entry as catalog JSON.
  nlohmann::ordered_json ToJson() const;
};

class Catalog {
 public:
  // Parses a catalog document ({"models": [...]}, or a bare array of entries). `origin` names it in
  // errors, which say which entry and field are wrong.
  static Result<Catalog> Parse(const nlohmann::json& doc, const std::string& origin);
  // Kiln's built-in catalog.
  static const Catalog& Builtin();

  // Adds `other`'s entries; an entry with an id already here replaces it.
  void Merge(const Catalog& other);

  const std::vector<Entry>& entries() const { return entries_; }

 private:
  std::vector<Entry> entries_;
};

// What resolution may use about this machine and the model store.
struct ResolveContext {
  bool has_cuda_gpu = false;
  std::set<std::string> cached_ids;  // entries whose files are in the store
  std::string device;                // "cpu" or "gpu" to override the choice; "" for none
};

// The entry `name` (an id, an alias or a display name, case-insensitive) stands for. Among the
// entries an alias names, those this machine can run (a GPU entry needs a CUDA GPU) are ranked:
// the device first (a GPU before the CPU, or the one `device` says), then what is cached, then the
// newest modelVersion. NotFound naming the catalog's aliases when nothing matches;
// InvalidArgument saying why when entries match but none can run here.
Result<Entry> Resolve(const Catalog& catalog, std::string_view name, const ResolveContext& ctx);

}  // namespace kiln::catalog
