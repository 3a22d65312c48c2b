// The unit tests' way to compile a JSON schema: a failure is reported and "any value" stands in.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "kiln/text/json_schema_grammar.h"

namespace kiln::text::testing {

inline std::shared_ptr<const JsonGrammar> Compile(const std::string& schema,
                                                  const JsonGrammarOptions& options = {}) {
  auto grammar = JsonGrammar::FromSchemaText(schema, options);
  EXPECT_TRUE(grammar.ok()) << grammar.status().ToString() << "\n" << schema;
  return grammar.ok() ? *grammar : JsonGrammar::AnyValue();
}

}  // namespace kiln::text::testing
