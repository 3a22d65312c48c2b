#include "kiln/catalog/catalog.h"

#include <algorithm>
#include <cctype>
#include <tuple>

namespace kiln::catalog {
namespace {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Reads entry field `key` of `e` into `out` when present; "" when it is right, else what is wrong.
std::string Text(const json& e, const char* key, std::string* out, bool required) {
  auto it = e.find(key);
  if (it == e.end() || it->is_null())
    return required ? std::string("'") + key + "' is missing" : "";
  if (!it->is_string()) return std::string("'") + key + "' must be a string";
  *out = it->get<std::string>();
  if (required && out->empty()) return std::string("'") + key + "' is empty";
  return "";
}

std::string ParseEntry(const json& e, Entry* entry) {
  if (!e.is_object()) return "an entry must be an object";
  for (auto [key, out, required] :
       {std::tuple{"id", &entry->id, true}, std::tuple{"alias", &entry->alias, true},
        std::tuple{"displayName", &entry->display_name, false},
        std::tuple{"description", &entry->description, false},
        std::tuple{"publisher", &entry->publisher, false},
        std::tuple{"license", &entry->license, false}, std::tuple{"task", &entry->task, false},
        std::tuple{"source", &entry->source, false},
        std::tuple{"framework", &entry->framework, true},
        std::tuple{"modelVersion", &entry->model_version, false},
        std::tuple{"uri", &entry->uri, false}, std::tuple{"sha256", &entry->sha256, false}}) {
    if (std::string err = Text(e, key, out, required); !err.empty()) return err;
  }
  entry->framework = Lower(entry->framework);
  if (entry->framework != "onnx" && entry->framework != "vllm") {
    return "'framework' is '" + entry->framework + "'; Kiln knows ONNX and vllm";
  }
  if (e.contains("variants")) {
    if (!e["variants"].is_array()) return "'variants' must be an array";
    for (const json& v : e["variants"]) {
      Variant variant;
      if (!v.is_object()) return "each of 'variants' must be an object";
      for (auto [key, out] : {std::pair{"id", &variant.id}, std::pair{"compute", &variant.compute},
                              std::pair{"executionProvider", &variant.execution_provider}}) {
        if (std::string err = Text(v, key, out, false); !err.empty()) return "variants: " + err;
      }
      if (v.contains("fileSizeBytes")) {
        if (!v["fileSizeBytes"].is_number_integer() || v["fileSizeBytes"].get<int64_t>() < 0) {
          return "variants: 'fileSizeBytes' must be a non-negative integer";
        }
        variant.file_size_bytes = v["fileSizeBytes"].get<int64_t>();
      }
      entry->variants.push_back(std::move(variant));
    }
  }
  if (e.contains("supportedCompute")) {
    if (!e["supportedCompute"].is_array()) return "'supportedCompute' must be an array";
    for (const json& c : e["supportedCompute"]) {
      if (!c.is_string() || (c != "cpu" && c != "gpu")) {
        return "'supportedCompute' holds \"cpu\" and \"gpu\" only";
      }
      entry->supported_compute.push_back(c.get<std::string>());
    }
  }
  if (e.contains("contextLength")) {
    if (!e["contextLength"].is_number_integer() || e["contextLength"].get<int64_t>() < 0) {
      return "'contextLength' must be a non-negative integer";
    }
    entry->context_length = e["contextLength"].get<int64_t>();
  }
  if (e.contains("supportsToolCalling")) {
    const json& t = e["supportsToolCalling"];
    // Foundry's catalog API writes it as the string "true" or "false".
    if (t.is_boolean()) {
      entry->supports_tool_calling = t.get<bool>();
    } else if (t == "true" || t == "false") {
      entry->supports_tool_calling = t == "true";
    } else {
      return "'supportsToolCalling' must be true or false";
    }
  }
  return "";
}

// The devices an entry runs on: supportedCompute, else its variants' compute; an entry that
// states neither runs on both.
std::vector<std::string> Devices(const Entry& e) {
  std::vector<std::string> devices = e.supported_compute;
  if (devices.empty()) {
    for (const Variant& v : e.variants) {
      if (!v.compute.empty() &&
          std::find(devices.begin(), devices.end(), v.compute) == devices.end()) {
        devices.push_back(v.compute);
      }
    }
  }
  if (devices.empty()) devices = {"cpu", "gpu"};
  return devices;
}

bool Runs(const Entry& e, const std::string& device) {
  std::vector<std::string> d = Devices(e);
  return std::find(d.begin(), d.end(), device) != d.end();
}

// a < b as versions: numerically when both are numbers, else as text.
bool OlderVersion(const std::string& a, const std::string& b) {
  auto number = [](const std::string& s) {
    return !s.empty() &&
           std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  if (number(a) && number(b)) {
    return a.size() != b.size() ? a.size() < b.size() : a < b;
  }
  return a < b;
}

}  // namespace

std::string Entry::Runtime() const {
  if (framework == "vllm") return "vllm";
  return task == "predictive" ? "predictive" : "onnx-genai";
}

ojson Entry::ToJson() const {
  ojson variants_json = ojson::array();
  for (const Variant& v : variants) {
    ojson o = {{"id", v.id}, {"compute", v.compute}, {"executionProvider", v.execution_provider}};
    if (v.file_size_bytes > 0) o["fileSizeBytes"] = v.file_size_bytes;
    variants_json.push_back(std::move(o));
  }
  ojson o = {{"id", id},
             {"alias", alias},
             {"displayName", display_name},
             {"publisher", publisher},
             {"license", license},
             {"task", task},
             {"source", source},
             {"framework", framework == "onnx" ? "ONNX" : "vllm"},
             {"modelVersion", model_version},
             {"variants", variants_json},
             {"supportedCompute", supported_compute},
             {"runtime", Runtime()}};
  if (!description.empty()) o["description"] = description;
  if (!uri.empty()) o["uri"] = uri;
  if (!sha256.empty()) o["sha256"] = sha256;
  if (context_length > 0) o["contextLength"] = context_length;
  o["supportsToolCalling"] = supports_tool_calling;
  return o;
}

Result<Catalog> Catalog::Parse(const json& doc, const std::string& origin) {
  const json* models = &doc;
  if (doc.is_object()) {
    if (!doc.contains("models") || !doc["models"].is_array()) {
      return Status::InvalidArgument(origin + ": a catalog is {\"models\": [...]}");
    }
    models = &doc["models"];
  } else if (!doc.is_array()) {
    return Status::InvalidArgument(origin + ": a catalog is {\"models\": [...]}");
  }
  Catalog catalog;
  for (size_t i = 0; i < models->size(); ++i) {
    Entry entry;
    if (std::string err = ParseEntry((*models)[i], &entry); !err.empty()) {
      std::string which = entry.id.empty() ? "" : " ('" + entry.id + "')";
      return Status::InvalidArgument(origin + ": models[" + std::to_string(i) + "]" + which + ": " +
                                     err);
    }
    Catalog one;
    one.entries_.push_back(std::move(entry));
    catalog.Merge(one);  // a later entry with the same id replaces an earlier one
  }
  return catalog;
}

void Catalog::Merge(const Catalog& other) {
  for (const Entry& e : other.entries_) {
    auto same = std::find_if(entries_.begin(), entries_.end(),
                             [&](const Entry& mine) { return mine.id == e.id; });
    if (same != entries_.end()) {
      *same = e;
    } else {
      entries_.push_back(e);
    }
  }
}

Result<Entry> Resolve(const Catalog& catalog, std::string_view name, const ResolveContext& ctx) {
  const std::string q = Lower(name);
  std::vector<const Entry*> matches;
  for (const Entry& e : catalog.entries()) {
    if (Lower(e.id) == q || Lower(e.alias) == q || Lower(e.display_name) == q) {
      matches.push_back(&e);
    }
  }
  if (matches.empty()) {
    std::set<std::string> aliases;
    for (const Entry& e : catalog.entries()) aliases.insert(e.alias);
    std::string list;
    for (const std::string& a : aliases) list += (list.empty() ? "" : ", ") + a;
    return Status::NotFound("no model '" + std::string(name) +
                            "' in the catalog (aliases: " + list + ")");
  }
  if (ctx.device == "gpu" && !ctx.has_cuda_gpu) {
    return Status::InvalidArgument("'" + std::string(name) +
                                   "' was asked for on the GPU; this machine has no CUDA GPU");
  }
  // (device rank, cached, entry): the GPU ranks above the CPU.
  struct Candidate {
    int device;
    bool cached;
    const Entry* entry;
  };
  std::vector<Candidate> candidates;
  for (const Entry* e : matches) {
    const bool gpu = ctx.has_cuda_gpu && ctx.device != "cpu" && Runs(*e, "gpu");
    const bool cpu = ctx.device != "gpu" && Runs(*e, "cpu");
    if (!gpu && !cpu) continue;
    candidates.push_back({gpu ? 1 : 0, ctx.cached_ids.count(e->id) > 0, e});
  }
  if (candidates.empty()) {
    std::string ids;
    for (const Entry* e : matches) ids += (ids.empty() ? "" : ", ") + e->id;
    const std::string want = ctx.device.empty()
                                 ? (ctx.has_cuda_gpu ? "" : "the CPU (no CUDA GPU here)")
                                 : "the " + ctx.device;
    return Status::InvalidArgument("'" + std::string(name) + "' has no variant for " +
                                   (want.empty() ? "this machine" : want) + " (" + ids + ")");
  }
  auto better = [](const Candidate& a, const Candidate& b) {
    if (a.device != b.device) return a.device > b.device;
    if (a.cached != b.cached) return a.cached;
    return OlderVersion(b.entry->model_version, a.entry->model_version);
  };
  std::stable_sort(candidates.begin(), candidates.end(), better);
  return *candidates.front().entry;
}

}  // namespace kiln::catalog
