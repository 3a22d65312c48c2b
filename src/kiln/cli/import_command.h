// `kiln import <model.gguf> <out_dir> [--dtype f32|f16|bf16]`: turns a llama GGUF into a Hugging
// Face model folder (config.json, generation_config.json, model.safetensors and the tokenizer
// files), so the model can be served by runtimes that read Hugging Face folders.
#pragma once

#include <CLI/CLI.hpp>

namespace kiln::cli {

void RegisterImportCommand(CLI::App& app, int* exit_code);

}  // namespace kiln::cli
