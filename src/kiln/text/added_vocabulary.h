// AddedVocabulary: tokens matched verbatim in the text before any splitting (special tokens such
// as <|im_start|>, and user-defined ones), with Hugging Face's rules: leftmost-longest match,
// `lstrip`/`rstrip` swallow neighbouring whitespace, `single_word` requires word boundaries,
// `normalized` tokens are matched in normalized text, the others in the raw text.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace kiln::text {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
  bool special = false;
  // The text matched and shown for the id: `content` normalized when `normalized` is set (as
  // Hugging Face does on load), else `content` itself.
  std::string text;
};

class AddedVocabulary {
 public:
  // A piece of the text: either an added token (id >= 0) or text to tokenize (id == -1).
  struct Split {
    size_t begin, end;
    int32_t id;
  };

  // An empty `token.text` means `token.content`.
  void Add(AddedToken token);
  const std::vector<AddedToken>& tokens() const { return tokens_; }
  const AddedToken* FindById(int32_t id) const;
  const AddedToken* FindByContent(std::string_view content) const;
  bool has_normalized() const { return normalized_.has_tokens(); }

  // Splits `text` on the added tokens whose `normalized` flag equals `normalized`. When
  // `parse_special` is false, special tokens are read as plain text.
  void SplitText(std::string_view text, bool normalized, bool parse_special,
                 std::vector<Split>* out) const;

 private:
  // A byte trie over token contents, scanned from each position for the longest match.
  class Matcher {
   public:
    void Insert(std::string_view content, int32_t token_index);
    bool has_tokens() const { return nodes_.size() > 1; }
    // The leftmost-longest match at or after `from`: {begin, end, token index}.
    bool Find(std::string_view text, size_t from, size_t* begin, size_t* end,
              int32_t* token_index) const;

   private:
    struct Node {
      std::vector<std::pair<uint8_t, int32_t>> children;
      int32_t token_index = -1;
    };
    int32_t Child(int32_t node, uint8_t byte) const;
    std::vector<Node> nodes_{Node{}};
    bool first_byte_[256] = {};
  };

  std::vector<AddedToken> tokens_;
  std::unordered_map<int32_t, size_t> by_id_;
  std::unordered_map<std::string, size_t> by_content_;
  Matcher raw_;
  Matcher normalized_;
};

}  // namespace kiln::text
