// Writes a GGUF file's tokenizer as Hugging Face tokenizer files, for `kiln import`.
#pragma once

#include <string>

#include "kiln/base/status.h"
#include "kiln/formats/gguf.h"

namespace kiln::text {

// Writes tokenizer.json and tokenizer_config.json (chat_template, bos/eos/unk/pad tokens,
// add_bos_token, model_max_length) into `out_dir`, from the `tokenizer.ggml.*` and
// `tokenizer.chat_template` metadata of `gguf`. The tokenizer.json reproduces the model's own
// pre-tokenization (for example SmolLM2's `smollm` pre-tokenizer splits digits one by one), so
// the Hugging Face `tokenizers` package gives the same ids as llama.cpp on the original GGUF.
Status ExportTokenizerFromGguf(const gguf::GgufFile& gguf, const std::string& out_dir);

}  // namespace kiln::text
