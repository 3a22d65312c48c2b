// StopMatcher: finds stop strings in streamed text without releasing any part of a stop string.
//
// Text is pushed as it is detokenized; Push returns what can be shown now. A suffix that could
// still grow into a stop string is held back until it either completes (generation stops; the
// stop string is dropped unless include_stop) or stops matching (it is released).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace kiln::engine {

class StopMatcher {
 public:
  StopMatcher(std::vector<std::string> stops, bool include_stop);

  // Appends `text` and returns the text that is safe to release. After a stop string completes,
  // stopped() is true and later pushes return nothing.
  std::string Push(std::string_view text);
  // Releases whatever is held back (at the end of generation for other reasons).
  std::string Flush();

  bool stopped() const { return stopped_; }
  // The stop string that ended generation, when stopped().
  const std::string& matched() const { return matched_; }

 private:
  std::vector<std::string> stops_;
  bool include_stop_;
  std::string held_;
  bool stopped_ = false;
  std::string matched_;
};

}  // namespace kiln::engine
