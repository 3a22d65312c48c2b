#include "kiln/server/generation_defaults.h"

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
// asked.
Status ApplyFields(const json& obj, const std::string& file, bool with_max_new_tokens,
                   GenerationDefaults* d) {
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
    KILN_RETURN_IF_ERROR(TakeNumber(obj, f.key, f.lo, f.hi, file, &v, &found));
    if (!found) continue;
    const std::string key = f.key;
    if (key == "temperature") {
      p.temperature = static_cast<float>(v);
    } else if (key == "top_p") {
      if (v <= 0) return Status::InvalidArgument(file + ": 'top_p' must be greater than 0");
      p.top_p = static_cast<float>(v);
    } else if (key == "top_k") {
      p.top_k = static_cast<int>(v);
    } else if (key == "min_p") {
      p.min_p = static_cast<float>(v);
    } else {
      if (v <= 0) {
        return Status::InvalidArgument(file + ": 'repetition_penalty' must be greater than 0");
      }
      p.repetition_penalty = static_cast<float>(v);
    }
    d->applied[key] = {{"value", v}, {"from", fs::path(file).filename().string()}};
  }
  if (with_max_new_tokens) {
    double v = 0;
    bool found = false;
    KILN_RETURN_IF_ERROR(TakeNumber(obj, "max_new_tokens", 1, 1 << 30, file, &v, &found));
    if (found) {
      d->max_tokens = static_cast<int64_t>(v);
      d->applied["max_tokens"] = {{"value", *d->max_tokens},
                                  {"from", fs::path(file).filename().string()}};
    }
  }
  return Status::Ok();
}

}  // namespace

Result<GenerationDefaults> LoadGenerationDefaults(const std::string& model_dir,
                                                  const std::string& mode) {
  GenerationDefaults d;
  if (mode == "vllm") {
    d.source = "built-in (--generation-config vllm)";
    return d;
  }
  const fs::path dir = mode == "auto" ? fs::path(model_dir) : fs::path(mode);
  std::error_code ec;
  if (mode != "auto" && !fs::is_directory(dir, ec)) {
    return Status::InvalidArgument("--generation-config " + mode +
                                   ": not 'auto', 'vllm' or a folder");
  }
  std::vector<std::string> read;
  const fs::path generation_config = dir / "generation_config.json";
  KILN_ASSIGN_OR_RETURN(auto gc, ReadObject(generation_config));
  if (gc) {
    KILN_RETURN_IF_ERROR(ApplyFields(*gc, generation_config.string(), true, &d));
    read.push_back(generation_config.string());
  }
  // The runtime's own settings, only for the model folder itself.
  const fs::path genai_config = fs::path(model_dir) / "genai_config.json";
  KILN_ASSIGN_OR_RETURN(auto genai, mode == "auto" ? ReadObject(genai_config)
                                                   : Result<std::optional<json>>(std::nullopt));
  if (genai && genai->contains("search") && (*genai)["search"].is_object()) {
    const json& search = (*genai)["search"];
    const std::string file = genai_config.string() + " (search)";
    auto do_sample = search.find("do_sample");
    if (do_sample != search.end() && !do_sample->is_boolean()) {
      return Status::InvalidArgument(file + ": 'do_sample' must be a boolean");
    }
    if (do_sample != search.end() && !do_sample->get<bool>()) {
      d.params.temperature = 0.0f;
      d.applied["temperature"] = {{"value", 0}, {"from", "genai_config.json (do_sample false)"}};
      json rest = json::object();
      if (search.contains("repetition_penalty")) {
        rest["repetition_penalty"] = search["repetition_penalty"];
      }
      KILN_RETURN_IF_ERROR(ApplyFields(rest, file, false, &d));
    } else {
      KILN_RETURN_IF_ERROR(ApplyFields(search, file, false, &d));
    }
    read.push_back(file);
  }
  d.source = read.empty() ? "built-in (the model folder has no sampling settings)" : "";
  for (size_t i = 0; i < read.size(); ++i) d.source += (i ? ", " : "") + read[i];
  return d;
}

}  // namespace kiln::server
