// GenerationDefaults: the sampling settings a model folder asks for, used for every field a
// request leaves out (vLLM's `--generation-config auto`).
//
// Sources, later ones overriding earlier ones:
//   generation_config.json  the fields vLLM takes: temperature, top_k, top_p, min_p,
//                           repetition_penalty, and max_new_tokens (a default max_tokens); as in
//                           vLLM, do_sample there is not read.
//   genai_config.json       its `search` section, which ONNX Runtime GenAI itself obeys:
//                           do_sample false means greedy (temperature 0); with do_sample true,
//                           temperature, top_k and top_p; repetition_penalty either way.
//   a GGUF file's metadata  general.sampling.temp, .top_k, .top_p, .min_p and .penalty_repeat,
//                           the keys llama.cpp reads (GgufSamplingFields).
//   --override-generation-config  a JSON object with generation_config.json's names, over
//                           everything else (vLLM's flag of that name).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "kiln/base/status.h"
#include "kiln/engine/sampling_params.h"
#include "kiln/formats/gguf.h"

namespace kiln::server {

struct GenerationDefaults {
  engine::SamplingParams params;  // Kiln's built-in defaults with the folder's applied
  // A default max_tokens (generation_config.json max_new_tokens); a request that names none
  // gets it, cut to the context left after its prompt.
  std::optional<int64_t> max_tokens;
  // The fields taken and the file each came from, as shown by /v1/models/{id} and logged.
  nlohmann::ordered_json applied = nlohmann::ordered_json::object();
  std::string source;  // what was read, in words
};

struct GenerationSources {
  // The model folder; empty for a GGUF file, whose settings are `gguf_fields`.
  std::string model_dir;
  // "auto" reads the model's own settings; "vllm" ignores them (vLLM's and OpenAI's built-in
  // defaults: temperature 1, top_p 1); any other value is a folder whose
  // generation_config.json is read instead.
  std::string mode = "auto";
  // A GGUF file's sampling metadata under generation_config.json's names (GgufSamplingFields).
  nlohmann::json gguf_fields = nlohmann::json::object();
  // --override-generation-config: a JSON object text, or empty.
  std::string override_json;
};

// A malformed file is an error naming it; a value out of range is an error naming the file
// (or flag) and the field; an override naming a field Kiln does not take is an error listing
// those it takes.
Result<GenerationDefaults> LoadGenerationDefaults(const GenerationSources& sources);

// general.sampling.* of a GGUF file, renamed as generation_config.json names them.
nlohmann::json GgufSamplingFields(const gguf::GgufFile& file);

}  // namespace kiln::server
