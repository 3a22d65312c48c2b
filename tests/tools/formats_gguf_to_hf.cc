// formats_gguf_to_hf: the weights-and-configs half of `kiln import`, without the tokenizer files,
// so the Python tests can check the conversion on its own.
//
//   formats_gguf_to_hf <model.gguf> <out_dir> <f32|f16|bf16>
#include <cstdio>
#include <filesystem>
#include <string>

#include "kiln/formats/gguf.h"
#include "kiln/formats/gguf_to_hf.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s <model.gguf> <out_dir> <f32|f16|bf16>\n", argv[0]);
    return 2;
  }
  std::string dtype_name = argv[3];
  kiln::safetensors::Dtype dtype = dtype_name == "f32"   ? kiln::safetensors::Dtype::kF32
                                   : dtype_name == "f16" ? kiln::safetensors::Dtype::kF16
                                                         : kiln::safetensors::Dtype::kBF16;
  auto gguf = kiln::gguf::GgufFile::Open(argv[1]);
  if (!gguf.ok()) {
    std::fprintf(stderr, "%s\n", gguf.status().ToString().c_str());
    return 1;
  }
  std::filesystem::create_directories(argv[2]);
  auto stats = kiln::formats::WriteHfModelFromGguf(*gguf, argv[2], dtype);
  if (!stats.ok()) {
    std::fprintf(stderr, "%s\n", stats.status().ToString().c_str());
    return 1;
  }
  std::printf("%zu tensors\n", stats->tensors);
  return 0;
}
