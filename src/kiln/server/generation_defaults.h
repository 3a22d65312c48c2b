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
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "kiln/base/status.h"
#include "kiln/engine/sampling_params.h"

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

// `mode`: "auto" reads the model folder `model_dir`; "vllm" ignores the folder (vLLM's and
// OpenAI's built-in defaults: temperature 1, top_p 1); any other value is a folder whose
// generation_config.json is read. A malformed file is an error naming it; a value out of range
// is an error naming the file and the field.
Result<GenerationDefaults> LoadGenerationDefaults(const std::string& model_dir,
                                                  const std::string& mode);

}  // namespace kiln::server
