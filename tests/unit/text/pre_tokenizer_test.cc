// Pre-tokenizer splits, with expected values from the Hugging Face `tokenizers` documentation
// and the GPT-2 pattern's definition.
#include "kiln/text/pre_tokenizer.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace kiln::text {
namespace {

std::vector<std::string> Split(const PreTokenizer& pre, const std::string& text) {
  std::vector<Piece> pieces{{text, true}};
  pre.Apply(&pieces);
  std::vector<std::string> out;
  for (auto& p : pieces) out.push_back(p.text);
  return out;
}

PreTokenizer SplitOn(const std::string& pattern, SplitBehavior behavior, bool invert = false) {
  PreTokenizer pre;
  pre.AddSplit(Regex::FromLiteral(pattern).value(), behavior, invert);
  return pre;
}

using V = std::vector<std::string>;

// The example of tokenizers' SplitDelimiterBehavior docs: "the-final--countdown" split on "-".
TEST(PreTokenizerTest, SplitBehaviors) {
  const std::string text = "the-final--countdown";
  EXPECT_EQ(Split(SplitOn("-", SplitBehavior::kRemoved), text), (V{"the", "final", "countdown"}));
  EXPECT_EQ(Split(SplitOn("-", SplitBehavior::kIsolated), text),
            (V{"the", "-", "final", "-", "-", "countdown"}));
  EXPECT_EQ(Split(SplitOn("-", SplitBehavior::kMergedWithPrevious), text),
            (V{"the-", "final-", "-", "countdown"}));
  EXPECT_EQ(Split(SplitOn("-", SplitBehavior::kMergedWithNext), text),
            (V{"the", "-final", "-", "-countdown"}));
  EXPECT_EQ(Split(SplitOn("-", SplitBehavior::kContiguous), text),
            (V{"the", "-", "final", "--", "countdown"}));
}

// Empty matches split like Oniguruma's iterator; expected values are what tokenizers 0.23's
// pre_tokenize_str returns for the same patterns.
TEST(PreTokenizerTest, EmptyMatchesAndInversion) {
  PreTokenizer groups;
  groups.AddSplit(Regex::FromOniguruma("(?=(\\d{3})+(?!\\d))").value(), SplitBehavior::kIsolated,
                  false);
  EXPECT_EQ(Split(groups, "x1234567 89"), (V{"x1", "234", "567 89"}));
  PreTokenizer star;
  star.AddSplit(Regex::FromOniguruma("\\d*").value(), SplitBehavior::kIsolated, false);
  EXPECT_EQ(Split(star, "ab12c"), (V{"a", "b", "12", "c"}));
  PreTokenizer inverted;
  inverted.AddSplit(Regex::FromOniguruma("[A-Z]").value(), SplitBehavior::kContiguous, true);
  EXPECT_EQ(Split(inverted, "ABcDEf g"), (V{"AB", "c", "DE", "f g"}));
}

TEST(PreTokenizerTest, InvertedSplitKeepsMatches) {
  PreTokenizer pre;
  ASSERT_TRUE(pre.AddWhitespace().ok());
  EXPECT_EQ(Split(pre, "Hey friend!     How are you?!?"),
            (V{"Hey", "friend", "!", "How", "are", "you", "?!?"}));
}

TEST(PreTokenizerTest, ByteLevelGpt2Pattern) {
  PreTokenizer pre;
  ASSERT_TRUE(pre.AddByteLevel(/*add_prefix_space=*/false, /*use_regex=*/true).ok());
  EXPECT_TRUE(pre.has_byte_level());
  // Contractions split off, a space joins the following word, trailing spaces stay apart from
  // the last one that leads a word.
  EXPECT_EQ(Split(pre, "I'm   here 123abc!!\n"),
            (V{"I", "'m", "  ", " here", " 123", "abc", "!!", "\n"}));
  // \s also matches U+0085 in Oniguruma: NEL stays a space run.
  EXPECT_EQ(Split(pre, "a\xC2\x85\xC2\x85 b"), (V{"a", "\xC2\x85\xC2\x85", " b"}));
}

TEST(PreTokenizerTest, AddPrefixSpace) {
  PreTokenizer pre;
  ASSERT_TRUE(pre.AddByteLevel(/*add_prefix_space=*/true, /*use_regex=*/true).ok());
  EXPECT_EQ(Split(pre, "hello world"), (V{" hello", " world"}));
  EXPECT_EQ(Split(pre, " hello"), (V{" hello"}));
}

TEST(PreTokenizerTest, DigitsIndividually) {
  PreTokenizer pre;
  ASSERT_TRUE(pre.AddDigits(true).ok());
  EXPECT_EQ(Split(pre, "Call 123 please"), (V{"Call ", "1", "2", "3", " please"}));
  // Any Unicode number counts (Rust's char::is_numeric): Arabic-Indic digits, superscripts.
  EXPECT_EQ(Split(pre, "\xD9\xA1\xD9\xA4x\xC2\xB2"), (V{"\xD9\xA1", "\xD9\xA4", "x", "\xC2\xB2"}));
  PreTokenizer grouped;
  ASSERT_TRUE(grouped.AddDigits(false).ok());
  EXPECT_EQ(Split(grouped, "Call 123 please"), (V{"Call ", "123", " please"}));
}

TEST(PreTokenizerTest, Metaspace) {
  const std::string m = "\xE2\x96\x81";
  PreTokenizer always;
  always.AddMetaspace(m, PrependScheme::kAlways, /*split=*/true);
  EXPECT_EQ(Split(always, "Hey friend!"), (V{m + "Hey", m + "friend!"}));
  PreTokenizer whole;
  whole.AddMetaspace(m, PrependScheme::kAlways, /*split=*/false);
  EXPECT_EQ(Split(whole, "Hey friend!"), (V{m + "Hey" + m + "friend!"}));
  PreTokenizer never;
  never.AddMetaspace(m, PrependScheme::kNever, /*split=*/true);
  EXPECT_EQ(Split(never, "Hey  you"), (V{"Hey", m, m + "you"}));
}

}  // namespace
}  // namespace kiln::text
