// Decoder: turns token strings back into text (Hugging Face `decoders`): ByteLevel, Metaspace,
// Replace, ByteFallback, Fuse, Strip, chained in order. Each step maps the list of token
// strings to a new list, and the result is their concatenation, so Strip(start=1) after Fuse
// removes only the leading space of the whole text, as in Llama's decoder.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "kiln/text/regex.h"

namespace kiln::text {

class Decoder {
 public:
  void AddByteLevel();
  void AddMetaspace(std::string replacement, bool strip_first);
  void AddReplace(Regex pattern, std::string content);
  void AddByteFallback();
  void AddFuse();
  void AddStrip(std::string content, size_t start, size_t stop);

  bool empty() const { return steps_.empty(); }
  // With no steps, tokens are joined with spaces (Hugging Face's behaviour without a decoder).
  std::string Decode(std::vector<std::string> tokens) const;

 private:
  enum class Kind { kByteLevel, kMetaspace, kReplace, kByteFallback, kFuse, kStrip };
  struct Step {
    Kind kind = Kind::kFuse;
    Regex pattern;        // kReplace
    std::string content;  // kMetaspace replacement, kReplace content, kStrip character
    bool strip_first = false;
    size_t start = 0, stop = 0;  // kStrip
  };
  Step& AddStep(Kind kind);
  std::vector<Step> steps_;
};

}  // namespace kiln::text
