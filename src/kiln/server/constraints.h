// The engine-side constraints a chat request can ask for: JSON output (response_format) and
// tool calls (forced, or triggered by the model writing <tool_call>).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kiln/engine/token_constraint.h"
#include "kiln/text/json_constraint.h"
#include "kiln/text/json_schema_grammar.h"
#include "kiln/text/token_bytes.h"
#include "kiln/text/token_masker.h"

namespace kiln::server {

// The whole output is one JSON document of `grammar`.
class JsonOutputConstraint : public engine::TokenConstraint {
 public:
  JsonOutputConstraint(std::shared_ptr<const text::TokenMasker> masker,
                       std::shared_ptr<const text::JsonGrammar> grammar,
                       std::vector<int32_t> eos_ids)
      : inner_(std::move(masker), std::move(grammar), std::move(eos_ids)) {}
  void FillAllowed(std::span<uint8_t> allowed, int64_t tokens_left) override {
    inner_.FillAllowed(allowed, tokens_left);
  }
  void Accept(int32_t token) override { inner_.Accept(token); }

 private:
  text::JsonConstraint inner_;
};

// The tokens that can complete a trigger string: [k] lists those that start with the trigger's
// bytes from k on (k > 0: its first k bytes were written already); [0], those that hold it whole.
struct TriggerTokens {
  static std::shared_ptr<const TriggerTokens> Find(const text::TokenBytes& tokens,
                                                   const std::string& trigger);
  std::vector<std::vector<int32_t>> completing;
};

// Free text until the output contains `trigger`; from there on, one JSON document of `grammar`
// and then the end of the sequence. A token that would complete the trigger is allowed only if
// the document after it is valid so far and can still be finished in the tokens left.
class TriggeredJsonConstraint : public engine::TokenConstraint {
 public:
  TriggeredJsonConstraint(std::shared_ptr<const text::TokenBytes> bytes,
                          std::shared_ptr<const text::TokenMasker> masker,
                          std::shared_ptr<const text::JsonGrammar> grammar,
                          std::vector<int32_t> eos_ids, std::string trigger,
                          std::shared_ptr<const TriggerTokens> trigger_tokens);
  void FillAllowed(std::span<uint8_t> allowed, int64_t tokens_left) override;
  void Accept(int32_t token) override;

 private:
  // The document's bytes in `token` if it completes the trigger after the free text so far.
  std::optional<std::string> DocumentStart(const std::string& token) const;

  std::shared_ptr<const text::TokenBytes> bytes_;
  std::shared_ptr<const text::TokenMasker> masker_;
  std::shared_ptr<const text::JsonGrammar> grammar_;
  std::vector<int32_t> eos_ids_;
  std::string trigger_;
  std::shared_ptr<const TriggerTokens> trigger_tokens_;
  std::string tail_;  // the last bytes of free text, enough to spot the trigger
  std::unique_ptr<text::JsonMatcher> matcher_;  // set once the trigger has been written
  bool failed_ = false;
};

}  // namespace kiln::server
