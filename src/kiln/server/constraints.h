// The engine-side constraints a chat request can ask for: JSON output (response_format) and
// tool calls (forced, or triggered by the model writing <tool_call>).
#pragma once

#include <memory>
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
  void FillAllowed(std::span<uint8_t> allowed) override { inner_.FillAllowed(allowed); }
  void Accept(int32_t token) override { inner_.Accept(token); }

 private:
  text::JsonConstraint inner_;
};

// Free text until the output contains `trigger`; from there on, one JSON document of `grammar`
// and then the end of the sequence.
class TriggeredJsonConstraint : public engine::TokenConstraint {
 public:
  TriggeredJsonConstraint(std::shared_ptr<const text::TokenBytes> bytes,
                          std::shared_ptr<const text::TokenMasker> masker,
                          std::shared_ptr<const text::JsonGrammar> grammar,
                          std::vector<int32_t> eos_ids, std::string trigger);
  void FillAllowed(std::span<uint8_t> allowed) override;
  void Accept(int32_t token) override;

 private:
  std::shared_ptr<const text::TokenBytes> bytes_;
  std::shared_ptr<const text::TokenMasker> masker_;
  std::shared_ptr<const text::JsonGrammar> grammar_;
  std::vector<int32_t> eos_ids_;
  std::string trigger_;
  std::string tail_;  // the last bytes of free text, enough to spot the trigger
  std::unique_ptr<text::JsonMatcher> matcher_;  // set once the trigger has been written
  bool failed_ = false;
};

}  // namespace kiln::server
