// End-to-end encode/decode on small tokenizer.json files whose ids can be worked out by hand
// from the merge lists below.
#include "kiln/text/tokenizer.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kiln/text/byte_level.h"
#include "kiln/text/detokenizer.h"

namespace kiln::text {
namespace {

using nlohmann::json;
using Ids = std::vector<int32_t>;
const std::string kMarker = "\xE2\x96\x81";

// Llama-2 style: Prepend/Replace normalizer, byte fallback, Strip decoder, bos post-processor.
json SentencePieceJson() {
  json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  static const char* hex = "0123456789ABCDEF";
  for (int b = 0; b < 256; ++b) {
    vocab[std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">"] = 3 + b;
  }
  const char* pieces[] = {"h", "e", "l", "o", "w", "r", "d"};
  vocab[kMarker] = 259;
  int id = 260;
  for (const char* p : pieces) vocab[p] = id++;  // h=260 e=261 l=262 o=263 w=264 r=265 d=266
  vocab[kMarker + "h"] = 267;
  vocab["ll"] = 268;
  vocab[kMarker + "he"] = 269;
  vocab["llo"] = 270;
  vocab[kMarker + "hello"] = 271;
  json merges = {kMarker + " h", "l l", kMarker + "h e", "ll o", kMarker + "he llo"};
  json added = json::array();
  for (auto [i, name] : {std::pair{0, "<unk>"}, {1, "<s>"}, {2, "</s>"}}) {
    added.push_back({{"id", i},
                     {"content", name},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  return {{"added_tokens", added},
          {"normalizer",
           {{"type", "Sequence"},
            {"normalizers",
             {{{"type", "Prepend"}, {"prepend", kMarker}},
              {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kMarker}}}}}},
          {"pre_tokenizer", nullptr},
          {"post_processor",
           {{"type", "TemplateProcessing"},
            {"single",
             {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
            {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}}},
          {"decoder",
           {{"type", "Sequence"},
            {"decoders",
             {{{"type", "Replace"}, {"pattern", {{"String", kMarker}}}, {"content", " "}},
              {{"type", "ByteFallback"}},
              {{"type", "Fuse"}},
              {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
          {"model",
           {{"type", "BPE"},
            {"unk_token", "<unk>"},
            {"fuse_unk", true},
            {"byte_fallback", true},
            {"vocab", vocab},
            {"merges", merges}}}};
}

// GPT-2 style: ids 0-255 are the byte alphabet in byte order.
json ByteLevelJson() {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[ByteLevelChar(static_cast<uint8_t>(b))] = b;
  const std::string g = ByteLevelChar(' ');
  vocab[g + "w"] = 256;
  vocab["or"] = 257;
  vocab[g + "wor"] = 258;
  vocab["ld"] = 259;
  vocab[g + "world"] = 260;
  json merges = json::array({json::array({g, "w"}), "o r", g + "w or", "l d", g + "wor ld"});
  json added = json::array(
      {{{"id", 261}, {"content", "<|end|>"}, {"special", true}, {"normalized", false}}});
  return {
      {"added_tokens", added},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}};
}

Tokenizer Load(const json& j) {
  auto t = Tokenizer::FromJson(j.dump(), "test.json");
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return std::move(t).value();
}

std::vector<std::string> Stream(const Tokenizer& t, const Ids& ids, bool skip_special) {
  Detokenizer d(t, skip_special);
  std::vector<std::string> chunks;
  for (int32_t id : ids) chunks.push_back(d.Push(id));
  chunks.push_back(d.Flush());
  return chunks;
}

TEST(TokenizerTest, SentencePieceMergesAndByteFallback) {
  Tokenizer t = Load(SentencePieceJson());
  EXPECT_EQ(t.Encode("hello"), (Ids{271}));
  // ö is not in the vocabulary: its UTF-8 bytes C3 B6 become <0xC3> <0xB6>.
  EXPECT_EQ(t.Encode("hello w\xC3\xB6rld"),
            (Ids{271, 259, 264, 3 + 0xC3, 3 + 0xB6, 265, 262, 266}));
  EXPECT_EQ(t.Encode("hello", {.add_special_tokens = true}), (Ids{1, 271}));
  // Special tokens are split out first; each text piece gets its own prefix marker.
  EXPECT_EQ(t.Encode("</s>hello"), (Ids{2, 271}));
  EXPECT_EQ(t.Encode("</s>hello", {.parse_special = false}).front(), 259);
  EXPECT_EQ(t.Decode(Ids{1, 271, 259, 264, 3 + 0xC3, 3 + 0xB6, 265}, true), "hello w\xC3\xB6r");
  EXPECT_EQ(t.Decode(Ids{1, 271}, false), "<s> hello");
  EXPECT_TRUE(t.IsSpecial(1));
  EXPECT_EQ(t.TokenToId(kMarker + "hello"), 271);
}

TEST(TokenizerTest, SentencePieceStreamingKeepsSpacesAfterTheFirstToken) {
  Tokenizer t = Load(SentencePieceJson());
  EXPECT_EQ(Stream(t, Ids{1, 271, 259, 264, 3 + 0xC3, 3 + 0xB6, 265}, true),
            (std::vector<std::string>{"", "hello", " ", "w", "", "\xC3\xB6", "r", ""}));
}

TEST(TokenizerTest, ByteLevelBpe) {
  Tokenizer t = Load(ByteLevelJson());
  EXPECT_EQ(t.Encode("hello world"), (Ids{'h', 'e', 'l', 'l', 'o', 260}));
  EXPECT_EQ(t.Encode("\xE4\xB8\xAD<|end|>"), (Ids{0xE4, 0xB8, 0xAD, 261}));
  EXPECT_EQ(t.Decode(Ids{'h', 'i', 260, 261}), "hi world<|end|>");
  EXPECT_EQ(t.Decode(Ids{'h', 'i', 260, 261}, true), "hi world");
  // Invalid UTF-8 in the input is replaced by U+FFFD (EF BF BD) before encoding.
  EXPECT_EQ(t.Encode("a\xFF"), (Ids{'a', 0xEF, 0xBF, 0xBD}));
}

TEST(TokenizerTest, ByteLevelStreamingHoldsBackPartialCharacters) {
  Tokenizer t = Load(ByteLevelJson());
  EXPECT_EQ(Stream(t, Ids{'a', 0xE4, 0xB8, 0xAD, 260, 261}, true),
            (std::vector<std::string>{"a", "", "", "\xE4\xB8\xAD", " world", "", ""}));
  // A sequence cut off at the end comes out of Flush as U+FFFD.
  EXPECT_EQ(Stream(t, Ids{'a', 0xE4, 0xB8}, false),
            (std::vector<std::string>{"a", "", "", "\xEF\xBF\xBD"}));
}

TEST(TokenizerTest, AddedTokenStripFlags) {
  json j = ByteLevelJson();
  j["added_tokens"][0]["lstrip"] = true;
  j["added_tokens"][0]["rstrip"] = true;
  Tokenizer t = Load(j);
  // The spaces on both sides of <|end|> belong to the token.
  EXPECT_EQ(t.Encode("a  <|end|>  b"), (Ids{'a', 261, 'b'}));
}

TEST(TokenizerTest, LeftmostLongestAddedTokens) {
  json j = ByteLevelJson();
  j["added_tokens"].push_back(
      {{"id", 262}, {"content", "<|end|>x"}, {"special", false}, {"normalized", false}});
  Tokenizer t = Load(j);
  EXPECT_EQ(t.Encode("<|end|>x<|end|>"), (Ids{262, 261}));
}

TEST(TokenizerJsonTest, ErrorsNameTheFileAndPlace) {
  auto bad_syntax = Tokenizer::FromJson("{\"model\": [1, 2", "broken.json");
  ASSERT_FALSE(bad_syntax.ok());
  EXPECT_NE(bad_syntax.status().message().find("broken.json: byte offset 15"), std::string::npos)
      << bad_syntax.status().message();

  json j = ByteLevelJson();
  j["model"]["merges"].push_back("x y");
  auto bad_merge = Tokenizer::FromJson(j.dump(), "merge.json");
  ASSERT_FALSE(bad_merge.ok());
  EXPECT_NE(bad_merge.status().message().find("merge.json"), std::string::npos);
  EXPECT_NE(bad_merge.status().message().find("merge 5"), std::string::npos);

  j = ByteLevelJson();
  j["model"]["type"] = "WordPiece";
  EXPECT_EQ(Tokenizer::FromJson(j.dump(), "wp.json").status().code(), StatusCode::kUnsupported);

  j = ByteLevelJson();
  j["pre_tokenizer"] = {
      {"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  auto bad_regex = Tokenizer::FromJson(j.dump(), "re.json");
  ASSERT_FALSE(bad_regex.ok());
  EXPECT_NE(bad_regex.status().message().find("pre_tokenizer.pattern"), std::string::npos)
      << bad_regex.status().message();
}

}  // namespace
}  // namespace kiln::text
