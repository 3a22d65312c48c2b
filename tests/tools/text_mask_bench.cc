// text_mask_bench: times the constrained-decoding mask (TokenMasker::FillAllowed) at typical
// JSON states over a real vocabulary, for bench/token_masker_bench.sh.
//
//   text_mask_bench model.gguf [repeats]
//
// Prints one line per state: its name, microseconds per mask (mean over the repeats) and how
// many tokens the mask allows.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "kiln/formats/gguf.h"
#include "kiln/text/json_matcher.h"
#include "kiln/text/json_schema_grammar.h"
#include "kiln/text/token_bytes.h"
#include "kiln/text/token_masker.h"
#include "kiln/text/tokenizer.h"

namespace {

using kiln::text::JsonGrammar;
using kiln::text::JsonMatcher;

constexpr const char* kPersonSchema =
    R"({"type":"object","properties":{"name":{"type":"string","maxLength":8},
       "age":{"type":"integer","minimum":0,"maximum":150},"color":{"enum":["red","green"]},
       "tags":{"type":"array","items":{"type":"string"},"maxItems":3}},
       "required":["name"]})";
constexpr const char* kStringOrEnumSchema =
    R"({"type":"object","properties":{"a":{"anyOf":[
       {"type":"string"},{"enum":["bcd","bce"]}]}},"required":["a"]})";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: text_mask_bench model.gguf [repeats]\n");
    return 2;
  }
  const int repeats = argc > 2 ? std::max(1, std::atoi(argv[2])) : 50;
  auto gguf = kiln::gguf::GgufFile::Open(argv[1]);
  if (!gguf.ok()) {
    std::fprintf(stderr, "%s\n", gguf.status().ToString().c_str());
    return 1;
  }
  auto tokenizer = kiln::text::Tokenizer::FromGguf(*gguf);
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "%s\n", tokenizer.status().ToString().c_str());
    return 1;
  }
  auto masker = kiln::text::TokenMasker::Create(kiln::text::TokenBytes::FromTokenizer(*tokenizer));
  auto person = JsonGrammar::FromSchemaText(kPersonSchema);
  auto string_or_enum = JsonGrammar::FromSchemaText(kStringOrEnumSchema);
  if (!person.ok() || !string_or_enum.ok()) return 1;
  auto any = JsonGrammar::AnyValue();
  struct State {
    const char* name;
    std::shared_ptr<const JsonGrammar> grammar;
    const char* prefix;
  };
  const std::vector<State> states = {
      {"document start", *person, ""},
      {"inside a string", *person, "{\"name\":\"ab"},
      {"inside a free string", any, "[\"abc"},
      {"between members", *person, "{\"name\":\"a\""},
      {"after a comma", *person, "{\"name\":\"a\","},
      {"inside a number", *person, "{\"name\":\"a\",\"age\":1"},
      {"value start (any)", any, "{\"a\":"},
      {"inside a number (any)", any, "[12"},
      {"after a key (any)", any, "{\"key\""},
      {"string, UTF-8 pending", any, "\"\xE2"},
      {"string, after backslash", any, "\"a\\"},
      {"string or enum", *string_or_enum, "{\"a\":\"b"},
  };
  std::vector<uint8_t> mask(masker->vocab_size());
  for (const State& s : states) {
    JsonMatcher matcher(s.grammar);
    if (!matcher.Accept(s.prefix)) {
      std::fprintf(stderr, "%s: the prefix is rejected\n", s.name);
      return 1;
    }
    auto begin = std::chrono::steady_clock::now();
    for (int i = 0; i < repeats; ++i) masker->FillAllowed(matcher, mask);
    double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - begin)
                    .count() /
                repeats;
    size_t allowed = 0;
    for (uint8_t m : mask) allowed += m;
    std::printf("%-24s %9.1f us  %6zu allowed\n", s.name, us, allowed);
  }
  return 0;
}
