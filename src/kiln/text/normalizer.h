// Normalizer: the text rewrites a tokenizer applies before splitting (Hugging Face
// `normalizers`): Replace, Prepend, Strip, NFC, chained in order.
//
// Each piece of text between added tokens is normalized on its own, so Prepend("▁") marks the
// start of every such piece, as SentencePiece models expect.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "kiln/base/status.h"
#include "kiln/text/regex.h"

namespace kiln::text {

class Normalizer {
 public:
  void AddReplace(Regex pattern, std::string content);
  void AddPrepend(std::string prefix);
  void AddStrip(bool left, bool right);
  void AddNfc();

  bool empty() const { return steps_.empty(); }
  // Rewrites `text` (valid UTF-8) in place.
  void Apply(std::string* text) const;

 private:
  enum class Kind { kReplace, kPrepend, kStrip, kNfc };
  struct Step {
    Kind kind = Kind::kNfc;
    Regex pattern;        // kReplace
    std::string content;  // kReplace, kPrepend
    bool left = false;    // kStrip
    bool right = false;   // kStrip
  };
  std::vector<Step> steps_;
};

}  // namespace kiln::text
