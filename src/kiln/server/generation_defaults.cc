#include "kiln/server/generation_defaults.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "kiln/base/mapped_file.h"

namespace kiln::server {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

Result<std::optional<json>> ReadObject(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return std::optional<json>();
  KILN_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path.string()));
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return Status::InvalidArgument(path.string() + ": not a JSON object");
  }
  return std::optional<json>(std::move(j));
}

// Takes `key` from `obj` as a number within [lo, hi] into `*out`; absent or null leaves it.
Status TakeNumber(const json& obj, const char* key, double lo, double hi, const std::string& file,
                  double* out, bool* found) {
  *found = false;
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return Status::Ok();
  if (!it->is_number() || !std::isfinite(it->get<double>()) || it->get<double>() < lo ||
      it->get<double>() > hi) {
    return Status::InvalidArgument(file + ": '" + key + "' must be a number between " +
                                   json(lo).dump() + " and " + json(hi).dump() + ", got " +
                                   it->dump());
  }
  *out = it->get<double>();
  *found = true;
  return Status::Ok();
}

// Applies the sampling fields of `obj` (generation_config.json's names), and max_new_tokens when
// asked. `where` names the source in errors; `from` is what /v1/models/{id} shows.
Status ApplyFields(const json& obj, const std::string& where, const std::string& from,
                   bool with_max_new_tokens, GenerationDefaults* d) {
  struct Field {
    const char* key;
    double lo, hi;
  };
  static const Field kFields[] = {{"temperature", 0, 2},
                                  {"top_p", 0, 1},
                                  {"top_k", -1, 2147483647.0},
                                  {"min_p", 0, 1},
                                  {"repetition_penalty", 0, 100}};
  engine::SamplingParams& p = d->params;
  for (const Field& f : kFields) {
    double v = 0;
    bool found = false;
    KILN_RETURN_IF_ERROR(TakeNumber(obj, f.key, f.lo, f.hi, where, &v, &found));
    if (!found) continue;
    const std::string key = f.key;
    if (key == "temperature") {
      p.temperature = static_cast<float>(v);
    } else if (key == "top_p") {
      if (v <= 0) return Status::InvalidArgument(where + ": 'top_p' must be greater than 0");
      p.top_p = static_cast<float>(v);
    } else if (key == "top_k") {
      p.top_k = static_cast<int>(v);
    } else if (key == "min_p") {
      p.min_p = static_cast<float>(v);
    } else {
      if (v <= 0) {
        return Status::InvalidArgument(where + ": 'repetition_penalty' must be greater than 0");
      }
      p.repetition_penalty = static_cast<float>(v);
    }
    const json shown = key == "top_k" ? json(static_cast<int64_t>(v)) : json(v);
    d->applied[key] = {{"value", shown}, {"from", from}};
  }
  if (with_max_new_tokens) {
    double v = 0;
    bool found = false;
    KILN_RETURN_IF_ERROR(TakeNumber(obj, "max_new_tokens", 1, 1 << 30, where, &v, &found));
    if (found) {
      d->max_tokens = static_cast<int64_t>(v);
      d->applied["max_tokens"] = {{"value", *d->max_tokens}, {"from", from}};
    }
  }
  return Status::Ok();
}

Status ApplyFile(const fs::path& file, bool with_max_new_tokens, GenerationDefaults* d,
                 std::vector<std::string>* read) {
  KILN_ASSIGN_OR_RETURN(auto obj, ReadObject(file));
  if (!obj) return Status::Ok();
  KILN_RETURN_IF_ERROR(
      ApplyFields(*obj, file.string(), file.filename().string(), with_max_new_tokens, d));
  read->push_back(file.string());
  return Status::Ok();
}

// genai_config.json's search section, which ONNX Runtime GenAI obeys.
Status ApplyGenaiSearch(const fs::path& genai_config, GenerationDefaults* d,
                        std::vector<std::string>* read) {
  KILN_ASSIGN_OR_RETURN(auto genai, ReadObject(genai_config));
  if (!genai || !genai->contains("search") || !(*genai)["search"].is_object()) {
    return Status::Ok();
  }
  const json& search = (*genai)["search"];
  const std::string where = genai_config.string() + " (search)";
  const std::string from = "genai_config.json (search)";
  auto do_sample = search.find("do_sample");
  if (do_sample != search.end() && !do_sample->is_boolean()) {
    return Status::InvalidArgument(where + ": 'do_sample' must be a boolean");
  }
  if (do_sample != search.end() && !do_sample->get<bool>()) {
    d->params.temperature = 0.0f;
    d->applied["temperature"] = {{"value", 0}, {"from", "genai_config.json (do_sample false)"}};
    json rest = json::object();
    if (search.contains("repetition_penalty")) {
      rest["repetition_penalty"] = search["repetition_penalty"];
    }
    KILN_RETURN_IF_ERROR(ApplyFields(rest, where, from, false, d));
  } else {
    KILN_RETURN_IF_ERROR(ApplyFields(search, where, from, false, d));
  }
  read->push_back(where);
  return Status::Ok();
}

Status ApplyOverride(const std::string& text, GenerationDefaults* d,
                     std::vector<std::string>* read) {
  const std::string flag = "--override-generation-config";
  json obj = json::parse(text, nullptr, false);
  if (obj.is_discarded() || !obj.is_object()) {
    return Status::InvalidArgument(flag + ": not a JSON object: " + text);
  }
  static const char* kTaken[] = {"temperature",        "top_p",         "top_k", "min_p",
                                 "repetition_penalty", "max_new_tokens"};
  for (const auto& [key, value] : obj.items()) {
    if (std::find(std::begin(kTaken), std::end(kTaken), key) == std::end(kTaken)) {
      return Status::InvalidArgument(flag + ": unknown field '" + key +
                                     "'; it takes temperature, top_p, top_k, min_p, "
                                     "repetition_penalty and max_new_tokens");
    }
  }
  KILN_RETURN_IF_ERROR(ApplyFields(obj, flag, flag, true, d));
  read->push_back(flag);
  return Status::Ok();
}

}  // namespace

json GgufSamplingFields(const gguf::GgufFile& file) {
  static const std::pair<const char*, const char*> kKeys[] = {
      {"general.sampling.temp", "temperature"},
      {"general.sampling.top_k", "top_k"},
      {"general.sampling.top_p", "top_p"},
      {"general.sampling.min_p", "min_p"},
      {"general.sampling.penalty_repeat", "repetition_penalty"}};
  json fields = json::object();
  for (const auto& [gguf_key, name] : kKeys) {
    if (auto v = file.GetFloat(gguf_key)) {
      fields[name] = *v;
    } else if (auto i = file.GetInt(gguf_key)) {
      fields[name] = *i;
    }
  }
  return fields;
}

Result<GenerationDefaults> LoadGenerationDefaults(const GenerationSources& sources) {
  GenerationDefaults d;
  std::vector<std::string> read;
  if (sources.mode == "auto") {
    if (!sources.model_dir.empty()) {
      const fs::path dir(sources.model_dir);
      KILN_RETURN_IF_ERROR(ApplyFile(dir / "generation_config.json", true, &d, &read));
      KILN_RETURN_IF_ERROR(ApplyGenaiSearch(dir / "genai_config.json", &d, &read));
    } else if (!sources.gguf_fields.empty()) {
      KILN_RETURN_IF_ERROR(ApplyFields(sources.gguf_fields, "the GGUF's general.sampling",
                                       "GGUF general.sampling", false, &d));
      read.push_back("the GGUF's general.sampling metadata");
    }
  } else if (sources.mode != "vllm") {
    const fs::path dir(sources.mode);
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) {
      return Status::InvalidArgument("--generation-config " + sources.mode +
                                     ": not 'auto', 'vllm' or a folder");
    }
    KILN_RETURN_IF_ERROR(ApplyFile(dir / "generation_config.json", true, &d, &read));
  }
  if (!sources.override_json.empty()) {
    KILN_RETURN_IF_ERROR(ApplyOverride(sources.override_json, &d, &read));
  }
  if (read.empty()) {
    d.source = sources.mode == "vllm" ? "built-in (--generation-config vllm)"
                                      : "built-in (the model has no sampling settings)";
  }
  for (size_t i = 0; i < read.size(); ++i) d.source += (i ? ", " : "") + read[i];
  return d;
}

}  // namespace kiln::server
