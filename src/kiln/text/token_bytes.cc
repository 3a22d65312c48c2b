#include "kiln/text/token_bytes.h"

#include "kiln/text/byte_level.h"

namespace kiln::text {
namespace {

constexpr std::string_view kMetaspace = "\xE2\x96\x81";  // U+2581, SentencePiece's space

}  // namespace

TokenBytes TokenBytes::FromTokenizer(const Tokenizer& tokenizer) {
  TokenBytes out;
  const size_t n = tokenizer.vocab_size();
  out.bytes.resize(n);
  out.excluded.assign(n, 1);
  const BpeModel::Options& options = tokenizer.parts().model.options();
  const auto& vocab = tokenizer.parts().model.vocab();
  for (size_t id = 0; id < n && id < vocab.size(); ++id) {
    const std::string& text = vocab[id];
    if (text.empty() || tokenizer.parts().added.FindById(static_cast<int32_t>(id)) != nullptr) {
      continue;
    }
    std::string raw;
    if (options.byte_level) {
      if (!ByteLevelDecode(text, &raw)) continue;  // outside the alphabet: leave it out
    } else if (int byte = options.byte_fallback ? ByteFallbackValue(text) : -1; byte >= 0) {
      raw.push_back(static_cast<char>(byte));
    } else {
      for (size_t pos = 0; pos < text.size();) {
        if (text.compare(pos, kMetaspace.size(), kMetaspace) == 0) {
          raw.push_back(' ');
          pos += kMetaspace.size();
        } else {
          raw.push_back(text[pos++]);
        }
      }
    }
    out.bytes[id] = std::move(raw);
    out.excluded[id] = 0;
  }
  // Added tokens keep their text for display, but stay excluded.
  for (const AddedToken& token : tokenizer.parts().added.tokens()) {
    if (token.id >= 0 && static_cast<size_t>(token.id) < n) out.bytes[token.id] = token.content;
  }
  return out;
}

TokenBytes TokenBytes::FromStrings(std::vector<std::string> bytes) {
  TokenBytes out;
  out.excluded.assign(bytes.size(), 0);
  for (size_t i = 0; i < bytes.size(); ++i) out.excluded[i] = bytes[i].empty() ? 1 : 0;
  out.bytes = std::move(bytes);
  return out;
}

}  // namespace kiln::text
