#include "kiln/cli/import_command.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "kiln/formats/gguf.h"
#include "kiln/formats/gguf_to_hf.h"
#include "kiln/formats/safetensors.h"
#include "kiln/text/gguf_tokenizer_export.h"

namespace kiln::cli {
namespace {

struct ImportOptions {
  std::string gguf_path;
  std::string out_dir;
  std::string dtype = "bf16";
};

Status RunImport(const ImportOptions& opts) {
  static const std::map<std::string, safetensors::Dtype> kDtypes = {
      {"f32", safetensors::Dtype::kF32},
      {"f16", safetensors::Dtype::kF16},
      {"bf16", safetensors::Dtype::kBF16},
  };
  auto dtype = kDtypes.find(opts.dtype);
  if (dtype == kDtypes.end()) {
    return Status::InvalidArgument("--dtype must be f32, f16 or bf16, not " + opts.dtype);
  }
  auto start = std::chrono::steady_clock::now();
  KILN_ASSIGN_OR_RETURN(gguf::GgufFile gguf, gguf::GgufFile::Open(opts.gguf_path));
  std::error_code ec;
  std::filesystem::create_directories(opts.out_dir, ec);
  if (ec) return Status::IoError(opts.out_dir + ": cannot create: " + ec.message());
  KILN_ASSIGN_OR_RETURN(formats::ImportStats stats,
                        formats::WriteHfModelFromGguf(gguf, opts.out_dir, dtype->second));
  KILN_RETURN_IF_ERROR(text::ExportTokenizerFromGguf(gguf, opts.out_dir));
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("imported %s -> %s\n", opts.gguf_path.c_str(), opts.out_dir.c_str());
  std::printf("  %zu tensors, %.1fM parameters, %s, model.safetensors %.1f MB, %.1f s\n",
              stats.tensors, static_cast<double>(stats.parameters) / 1e6, opts.dtype.c_str(),
              static_cast<double>(stats.bytes_written) / 1e6, seconds);
  return Status::Ok();
}

}  // namespace

void RegisterImportCommand(CLI::App& app, int* exit_code) {
  auto opts = std::make_shared<ImportOptions>();
  CLI::App* cmd = app.add_subcommand(
      "import", "Convert a llama or Gemma 3 GGUF model into a Hugging Face model folder");
  cmd->add_option("gguf", opts->gguf_path, "GGUF model file")->required();
  cmd->add_option("out_dir", opts->out_dir, "Folder to write (created if missing)")->required();
  cmd->add_option("--dtype", opts->dtype, "Weight dtype: f32, f16 or bf16")->capture_default_str();
  cmd->callback([opts, exit_code] {
    Status s = RunImport(*opts);
    if (!s.ok()) {
      std::fprintf(stderr, "kiln import: %s\n", s.ToString().c_str());
      *exit_code = 1;
    }
  });
}

}  // namespace kiln::cli
