// `kiln convert <hf-folder> <out> [--precision f32|int4]`: turns a Hugging Face Llama-family
// folder (llama, mistral, qwen2) into an ONNX Runtime GenAI model folder (genai_config.json,
// model.onnx + model.onnx.data, tokenizer files) that the onnx-genai runtime serves.
#pragma once

#include <CLI/CLI.hpp>

namespace kiln::cli {

void RegisterConvertCommand(CLI::App& app, int* exit_code);

}  // namespace kiln::cli
