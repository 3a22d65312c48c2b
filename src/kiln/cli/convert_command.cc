#include "kiln/cli/convert_command.h"

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "kiln/formats/genai_model_builder.h"

namespace kiln::cli {
namespace {

struct ConvertOptions {
  std::string hf_dir;
  std::string out_dir;
  std::string precision = "f32";
  bool int4_asymmetric = false;
  int64_t int4_block_size = 32;
};

Status RunConvert(const ConvertOptions& opts) {
  formats::GenaiConvertOptions options;
  if (opts.precision == "f32") {
    options.precision = formats::GenaiPrecision::kF32;
  } else if (opts.precision == "int4") {
    options.precision = formats::GenaiPrecision::kInt4;
  } else {
    return Status::InvalidArgument("--precision must be f32 or int4, not " + opts.precision);
  }
  options.int4_symmetric = !opts.int4_asymmetric;
  if (opts.int4_block_size < 16 || opts.int4_block_size > 256 ||
      (opts.int4_block_size & (opts.int4_block_size - 1)) != 0) {
    return Status::InvalidArgument("--int4-block-size must be a power of two from 16 to 256, not " +
                                   std::to_string(opts.int4_block_size));
  }
  options.int4_block_size = opts.int4_block_size;
  auto start = std::chrono::steady_clock::now();
  KILN_ASSIGN_OR_RETURN(formats::GenaiConvertStats stats,
                        formats::ConvertHfToGenai(opts.hf_dir, opts.out_dir, options));
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("converted %s -> %s\n", opts.hf_dir.c_str(), opts.out_dir.c_str());
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
      "convert", "Convert a Hugging Face Llama-family folder into an ONNX Runtime GenAI folder");
  cmd->add_option("hf_dir", opts->hf_dir, "Hugging Face model folder (config.json, safetensors)")
      ->required();
  cmd->add_option("out_dir", opts->out_dir, "Folder to write (created if missing)")->required();
  cmd->add_option("--precision", opts->precision, "Weights: f32, or int4 (MatMulNBits)")
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
