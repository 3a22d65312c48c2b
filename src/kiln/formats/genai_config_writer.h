// genai_config.json for a model folder converted from Hugging Face, written as onnxruntime-genai's
// model builder writes it: the decoder's geometry and input/output names, bos/eos/pad ids, and
// the search defaults (max_length = context_length, past_present_share_buffer = true).
//
// Special ids are resolved as the builder resolves them: generation_config.json over config.json
// over the tokenizer files, with the tokenizer's eos_token (the end of a chat turn) added to the
// eos ids when config.json leaves it out; pad falls back to the first eos id.
#pragma once

#include <cstdint>
#include <string>

#include "kiln/base/status.h"
#include "kiln/formats/hf_config.h"

namespace kiln::formats {

struct GenaiConfigFile {
  int64_t context_length = 0;  // config.json's seq_length if present, else max_position_embeddings
  std::string json;            // the file's text
};

// Reads config.json, and generation_config.json, tokenizer_config.json and tokenizer.json when
// present, from `hf_dir`; `config` is config.json parsed. `model_filename` names the ONNX file.
Result<GenaiConfigFile> MakeGenaiConfig(const ModelConfig& config, const std::string& hf_dir,
                                        const std::string& model_filename);

}  // namespace kiln::formats
