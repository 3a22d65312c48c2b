// Fuzzes the GGUF parser and, for files that parse, the typed lookups and dequantization of every
// tensor: no input may crash, read out of bounds or allocate without bound.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kiln/formats/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto g = kiln::gguf::GgufFile::Parse({data, size}, "fuzz.gguf");
  if (!g.ok()) return 0;
  for (const auto& entry : g->metadata()) {
    (void)g->GetString(entry.key);
    (void)g->GetInt(entry.key);
    (void)g->GetUint(entry.key);
    (void)g->GetFloat(entry.key);
    (void)g->GetStringArray(entry.key);
    (void)g->GetIntArray(entry.key);
    (void)g->GetFloatArray(entry.key);
  }
  std::vector<float> out;
  for (const auto& t : g->tensors()) {
    if (t.n_elements > (1u << 20)) continue;  // bounded by the input anyway; keep runs fast
    out.resize(t.n_elements);
    (void)kiln::gguf::DequantizeToF32(t.type, g->TensorData(t), t.n_elements, out.data());
  }
  return 0;
}
