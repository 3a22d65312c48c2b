// Writes an ONNX Runtime GenAI model folder from a Hugging Face Llama-family folder (llama,
// mistral, qwen2) or a llama GGUF file: genai_config.json, model.onnx with every weight in
// model.onnx.data, and the tokenizer files.
//
// The graph uses the operators and names that onnxruntime-genai's own model builder emits for
// the CPU execution provider: SimplifiedLayerNormalization / SkipSimplifiedLayerNormalization,
// GroupQueryAttention with rotary embedding inside (cos/sin caches as initializers) fed packed
// QKV from one q/k/v projection per layer, MatMul (f32) or MatMulNBits (int4), Gather or
// GatherBlockQuantized for the embedding, and the attention-mask subgraph that feeds
// GroupQueryAttention's seqlens_k / total_sequence_length.
//
// From a GGUF file, precision kGguf keeps the file's quantization where MatMulNBits computes it
// exactly: Q8_0 as 8-bit blocks, Q4_0 as symmetric 4-bit blocks, Q4_1 as 4-bit blocks with a
// zero point plus a per-block offset product (see GgufBlocks in the .cc); a Q8_0 or Q4_0
// embedding is gathered by GatherBlockQuantized from the same codes. Other types are written
// dequantized in f32, which is exact too. Gate and up are one projection too,
// split in two: fewer, larger matrix products per decode step.
// Weights are streamed tensor by tensor, so converting never holds the model twice in memory.
// Errors name the input file and what was expected.
#pragma once

#include <cstdint>
#include <string>

#include "kiln/base/status.h"
#include "kiln/formats/gguf.h"

namespace kiln::formats {

// kF32 and kInt4 start from the source's values (dequantized, for a GGUF); kGguf keeps a GGUF's
// blocks.
enum class GenaiPrecision { kF32, kInt4, kGguf };

struct GenaiConvertOptions {
  GenaiPrecision precision = GenaiPrecision::kF32;
  // int4: one scale per block (zero point 8, the builder's default) or a scale and a 4-bit
  // zero point per block.
  bool int4_symmetric = true;
  int64_t int4_block_size = 32;
  // MatMulNBits' accuracy_level: 4 quantizes activations to int8 per block on CPU (the fast
  // kernels, as the builder sets it); 0 keeps them in f32.
  int64_t accuracy_level = 4;
};

struct GenaiConvertStats {
  int64_t nodes = 0;
  int64_t initializers = 0;
  uint64_t parameters = 0;   // in the source model
  uint64_t data_bytes = 0;   // size of model.onnx.data
  uint64_t model_bytes = 0;  // size of model.onnx
};

// Converts `hf_dir` (config.json, *.safetensors, tokenizer.json, tokenizer_config.json) into
// `out_dir` (created if missing; files already there are replaced).
Result<GenaiConvertStats> ConvertHfToGenai(const std::string& hf_dir, const std::string& out_dir,
                                           const GenaiConvertOptions& options);

// Converts a llama GGUF file into `out_dir` (created if missing). config.json and
// generation_config.json are written there from the file's metadata; the caller writes
// tokenizer.json and tokenizer_config.json there first (text::ExportTokenizerFromGguf).
Result<GenaiConvertStats> ConvertGgufToGenai(const gguf::GgufFile& gguf, const std::string& out_dir,
                                             const GenaiConvertOptions& options);

// Quantizes one row of MatMulNBits' B (K values along the reduction axis) into 4-bit blocks
// exactly as ONNX Runtime's quantizer does (MLAS BlockwiseQuantizer; a partial last block takes
// its range from the values present, and its missing codes are 0):
//   symmetric:  scale = -m / 8 where m is the block's value of largest magnitude, zero point 8;
//   asymmetric: scale = (max(hi, 0) - min(lo, 0)) / 15, zero point = round(-min(lo, 0) / scale);
//   code = clamp(round(x / scale + zero_point), 0, 15), two codes a byte, low nibble first.
// `packed` holds ceil(K / block_size) * block_size / 2 bytes; `scales` and `zero_points` one entry
// per block (zero points unpacked, 8 when symmetric).
void QuantizeInt4Row(const float* row, int64_t k, int64_t block_size, bool symmetric,
                     uint8_t* packed, float* scales, uint8_t* zero_points);

}  // namespace kiln::formats
