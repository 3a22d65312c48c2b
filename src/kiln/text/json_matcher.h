// JsonMatcher: one sequence's position in a JsonGrammar, advanced byte by byte.
//
// The state is a set of pushdown-automaton stacks ("threads"; more than one only while anyOf
// alternatives or optional properties are still ambiguous). Stacks are persistent: each entry
// points at its parent in an arena, so a step adds one or two entries instead of copying a
// stack, and the token masker explores a token trie by appending to the arena and truncating it
// on the way back. Every accepted prefix can still be completed to a value the grammar allows,
// so a mask is never empty before IsComplete().
//
// Each entry also records the bytes the frames below it need to finish once it is done, so the
// fewest bytes that complete a document from any state (MinCompletionBytes) cost one look at each
// thread's top.
//
// Not thread-safe; one per sequence. Copies are independent and cheap: the arena is compacted
// as it grows, so a copy is at most a few hundred small entries.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/text/json_schema_grammar.h"

namespace kiln::text {

class TokenMasker;

class JsonMatcher {
 public:
  explicit JsonMatcher(std::shared_ptr<const JsonGrammar> grammar);
  // Copies carry the state only, not the scratch buffers.
  JsonMatcher(const JsonMatcher& other);
  JsonMatcher& operator=(const JsonMatcher& other);
  JsonMatcher(JsonMatcher&&) noexcept = default;
  JsonMatcher& operator=(JsonMatcher&&) noexcept = default;

  // Consumes `bytes` if the grammar allows them all from here; otherwise returns false and
  // leaves the state as it was.
  bool Accept(std::string_view bytes);
  // True if what was accepted is a whole document (trailing whitespace allowed).
  bool IsComplete() const;
  // The fewest bytes that make what was accepted a whole document: 0 once complete, otherwise
  // the length of the shortest continuation the grammar allows (kJsonNoCompletion: none).
  uint32_t MinCompletionBytes() const { return MinCompletionBytes(tops_); }
  // Text that is equal for two matchers of one grammar in the same state (the same stacks), so
  // searches over states can tell which they have seen.
  std::string StateKey() const;
  const JsonGrammar& grammar() const { return *grammar_; }
  size_t thread_count() const { return tops_.size(); }

 private:
  friend class TokenMasker;

  // One value being generated: which grammar node, where inside it, and its counters.
  struct Frame {
    int32_t node = 0;
    uint8_t state = 0;
    uint8_t ws = 0;  // whitespace bytes in the current run
    uint8_t x = 0;   // per-kind small field (UTF-8 bytes pending, surrogate mode, sign)
    uint8_t y = 0;   // per-kind small field
    uint32_t a = 0;  // per-kind counter (property index, item count, length, literal range)
    uint32_t b = 0;  // per-kind counter (key position, digit counts, literal position)
    uint64_t u = 0;  // per-kind value (integer digits, literal range end, escape value)
    uint64_t w = 0;  // per-kind value (fraction digits)
    bool operator==(const Frame&) const = default;
  };
  struct Entry {
    Frame frame;
    int32_t parent = -1;
    int32_t depth = 0;   // the root is 0, the top-level value 1
    uint32_t below = 0;  // fewest bytes that finish the frames below once this one is done
  };
  static constexpr int kEnd = 256;  // the end of input, fed to test completion

  struct PendingParent;

  // Appends to `out` the tops reached by feeding `c` to the stack at `top`.
  void Feed(int32_t top, int c, std::vector<int32_t>* out);
  // Pushes a new value of `node` under `parent`, starting with byte `c`.
  void Start(int32_t node, PendingParent* parent, int c, std::vector<int32_t>* out);
  int32_t Materialize(PendingParent* parent);
  // Adds digit `c` to a number's integer part; false if the grammar forbids it.
  static bool NumberIntegerDigit(const JsonNode& g, Frame* f, int c);
  // Whether the number in `f` may end here.
  static bool NumberCanEnd(const JsonNode& g, const Frame& f);
  // Narrows a literal's candidates by byte `c`: -1 rejected, 0 consumed, 1 consumed and done.
  static int LiteralStep(const JsonNode& g, Frame* f, int c);
  // Feeds `c` to every thread in `from`, writing the distinct successors to `to`.
  void Step(const std::vector<int32_t>& from, int c, std::vector<int32_t>* to);
  bool AcceptsEnd(int32_t top) const;
  // Fewest bytes that finish the value of `e`'s frame from its state, children it has yet to
  // start included (a child already on the stack is counted by its own entry).
  uint32_t RestBytes(const Entry& e) const;
  uint32_t MinCompletionBytes(const std::vector<int32_t>& threads) const;
  // True if the thread at `top` is inside a string body, where nearly every token is allowed
  // (the masker's fast path); `room` gets the code points it may still add.
  bool InStringBody(int32_t top, uint32_t* room) const;
  int32_t Push(const Frame& frame, int32_t parent);
  bool SameStack(int32_t x, int32_t y) const;
  void Compact();

  std::shared_ptr<const JsonGrammar> grammar_;
  int max_ws_ = 0;
  int max_depth_ = 0;
  std::vector<Entry> arena_;
  std::vector<int32_t> tops_;
  std::vector<int32_t> scratch_;
  std::vector<std::vector<int32_t>> mask_levels_;  // TokenMasker's per-depth thread sets
};

}  // namespace kiln::text
