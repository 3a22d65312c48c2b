// Converting a llama or Gemma 3 GGUF model into a Hugging Face model folder's weights and configs.
//
// The folder is a faithful Hugging Face model: tensors carry transformers' names and shapes,
// llama.cpp's rotary row permutation of a llama's attn_q/attn_k is undone, the 1 llama.cpp adds
// to Gemma 3's norm weights is taken off again, and values are the GGUF values dequantized to
// f32 and rounded (to nearest even) to the requested dtype. The tokenizer files
// are written separately (text/gguf_tokenizer_export.h).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "kiln/base/status.h"
#include "kiln/formats/gguf.h"
#include "kiln/formats/hf_config.h"
#include "kiln/formats/safetensors.h"

namespace kiln::formats {

// The config.json of a GGUF whose general.architecture is "llama" (Unsupported otherwise).
// `torch_dtype` is the dtype the weights will be written in.
Result<ModelConfig> LlamaConfigFromGguf(const gguf::GgufFile& gguf, safetensors::Dtype dtype);

// The config of a GGUF whose general.architecture is "gemma3", as llama.cpp's conversion writes
// it (Unsupported otherwise): shapes, rotary base, sliding window, end-of-turn tokens; tied
// embeddings. What the native runtime and the memory planner read.
Result<ModelConfig> Gemma3ConfigFromGguf(const gguf::GgufFile& gguf);

// transformers' name for a GGUF tensor of a llama or (`arch` "gemma3") Gemma 3 model
// ("blk.3.attn_q.weight" -> "model.layers.3.self_attn.q_proj.weight"); InvalidArgument for a
// tensor with no counterpart.
Result<std::string> HfTensorNameForGguf(std::string_view gguf_name,
                                        std::string_view arch = "llama");

// Undoes convert_hf_to_gguf.py's LlamaModel.permute on a [rows, cols] row-major matrix: GGUF
// interleaves the two rotary halves of each head's rows; transformers keeps them split.
void UnpermuteRotaryRows(const float* in, float* out, int64_t rows, int64_t cols, int64_t n_head);

struct ImportStats {
  size_t tensors = 0;
  uint64_t parameters = 0;
  uint64_t bytes_written = 0;  // model.safetensors
};

// Writes config.json, generation_config.json and model.safetensors into `out_dir` (which must
// exist), one tensor at a time: at most one tensor is held in f32.
Result<ImportStats> WriteHfModelFromGguf(const gguf::GgufFile& gguf, const std::string& out_dir,
                                         safetensors::Dtype dtype);

}  // namespace kiln::formats
