// Fuzzes the safetensors parser and, for files that parse, conversion of every tensor to f32.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kiln/formats/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto f = kiln::safetensors::SafetensorsFile::Parse({data, size}, "fuzz.safetensors");
  if (!f.ok()) return 0;
  std::vector<float> out;
  for (const auto& t : f->tensors()) {
    out.resize(t.n_elements);
    (void)kiln::safetensors::ToF32(t, out.data());
    (void)t.As<float>();
  }
  return 0;
}
