// libFuzzer target: parses the input as a tokenizer.json; when it loads, encodes a few texts
// (the input itself among them), decodes the ids back and streams them through the
// Detokenizer. Any input must give a tokenizer or an error, never a crash.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/text/detokenizer.h"
#include "kiln/text/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  auto tokenizer = kiln::text::Tokenizer::FromJson(input, "fuzz.json");
  if (!tokenizer.ok()) {
    // Errors must say where: the name given, always.
    if (tokenizer.status().message().find("fuzz.json") == std::string::npos) __builtin_trap();
    return 0;
  }
  const std::string texts[] = {
      std::string(input.substr(0, 256)),
      "Hello world! 123 \xE4\xB8\xAD\xE6\x96\x87 \xF0\x9F\x8D\x95\n\t  x",
      "",
      "\xFF\xFE invalid \xC0",
  };
  for (const auto& text : texts) {
    for (bool special : {false, true}) {
      std::vector<int32_t> ids =
          tokenizer->Encode(text, {.add_special_tokens = special, .parse_special = !special});
      std::string decoded = tokenizer->Decode(ids, special);
      kiln::text::Detokenizer detokenizer(*tokenizer, special);
      for (int32_t id : ids) detokenizer.Push(id);
      detokenizer.Flush();
    }
  }
  // Ids that are not in the vocabulary decode to nothing, not to a crash.
  std::vector<int32_t> odd = {-1, 0, 1, 255, 1 << 20, INT32_MAX};
  tokenizer->Decode(odd, false);
  return 0;
}
