#include "kiln/cli/convert_command.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "kiln/formats/genai_model_builder.h"
#include "kiln/formats/gguf.h"
#include "kiln/text/gguf_tokenizer_export.h"

namespace kiln::cli {
namespace {

struct ConvertOptions {
  std::string input;  // a Hugging Face folder or a GGUF file
  std::string out_dir;
  std::string precision = "f32";
  bool int4_asymmetric = false;
  int64_t int4_block_size = 32;
  int64_t accuracy_level = 4;
};

Status RunConvert(const ConvertOptions& opts) {
  formats::GenaiConvertOptions options;
  if (opts.precision == "f32") {
    options.precision = formats::GenaiPrecision::kF32;
  } else if (opts.precision == "int4") {
    options.precision = formats::GenaiPrecision::kInt4;
  } else if (opts.precision == "gguf") {
    options.precision = formats::GenaiPrecision::kGguf;
  } else {
    return Status::InvalidArgument("--precision must be f32, int4 or gguf, not " + opts.precision);
  }
  if (opts.accuracy_level < 0 || opts.accuracy_level > 4) {
    return Status::InvalidArgument("--accuracy-level must be 0 to 4, not " +
                                   std::to_string(opts.accuracy_level));
  }
  options.accuracy_level = opts.accuracy_level;
  options.int4_symmetric = !opts.int4_asymmetric;
  if (opts.int4_block_size < 16 || opts.int4_block_size > 256 ||
      (opts.int4_block_size & (opts.int4_block_size - 1)) != 0) {
    return Status::InvalidArgument("--int4-block-size must be a power of two from 16 to 256, not " +
                                   std::to_string(opts.int4_block_size));
  }
  options.int4_block_size = opts.int4_block_size;
  auto start = std::chrono::steady_clock::now();
  formats::GenaiConvertStats stats;
  std::error_code ec;
  if (std::filesystem::is_regular_file(opts.input, ec)) {
    KILN_ASSIGN_OR_RETURN(gguf::GgufFile gguf, gguf::GgufFile::Open(opts.input));
    std::filesystem::create_directories(opts.out_dir, ec);
    if (ec) return Status::IoError(opts.out_dir + ": cannot create: " + ec.message());
    KILN_RETURN_IF_ERROR(text::ExportTokenizerFromGguf(gguf, opts.out_dir));
    KILN_ASSIGN_OR_RETURN(stats, formats::ConvertGgufToGenai(gguf, opts.out_dir, options));
  } else {
    KILN_ASSIGN_OR_RETURN(stats, formats::ConvertHfToGenai(opts.input, opts.out_dir, options));
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("converted %s -> %s\n", opts.input.c_str(), opts.out_dir.c_str());
  std::printf(
      "  %s, %.1fM parameters, %lld nodes, %lld initializers, model.onnx %.1f KB, "
      "model.onnx.data %.1f MB, %.1f s\n",
      opts.precision.c_str(), static_cast<double>(stats.parameters) / 1e6,
      static_cast<long long>(stats.nodes), static_cast<long long>(stats.initializers),
      static_cast<double>(stats.model_bytes) / 1e3, static_cast<double>(stats.data_bytes) / 1e6,
      seconds);
  return Status::Ok();
}

}  // namespace

void RegisterConvertCommand(CLI::App& app, int* exit_code) {
  auto opts = std::make_shared<ConvertOptions>();
  CLI::App* cmd = app.add_subcommand(
      "convert",
      "Convert a Hugging Face Llama-family folder or a llama GGUF file into an ONNX Runtime "
      "GenAI folder");
  cmd->add_option("input", opts->input,
                  "Hugging Face model folder (config.json, safetensors) or GGUF file")
      ->required();
  cmd->add_option("out_dir", opts->out_dir, "Folder to write (created if missing)")->required();
  cmd->add_option("--precision", opts->precision,
                  "Weights: f32, int4 (MatMulNBits), or gguf (a GGUF input's own blocks where "
                  "ONNX Runtime computes them exactly: Q4_0, Q4_1, Q8_0; others in f32)")
      ->capture_default_str();
  cmd->add_option("--accuracy-level", opts->accuracy_level,
                  "MatMulNBits accuracy_level: 4 quantizes activations to int8 (fast), 0 keeps "
                  "them in f32")
      ->capture_default_str();
  cmd->add_option("--int4-block-size", opts->int4_block_size,
                  "int4: weights per quantization block (16 to 256, a power of two)")
      ->capture_default_str();
  cmd->add_flag("--int4-asymmetric", opts->int4_asymmetric,
                "int4: a 4-bit zero point per block instead of symmetric blocks");
  cmd->callback([opts, exit_code] {
    Status s = RunConvert(*opts);
    if (!s.ok()) {
      std::fprintf(stderr, "kiln convert: %s\n", s.ToString().c_str());
      *exit_code = 1;
    }
  });
}

}  // namespace kiln::cli
