// Tokenizer::FromGguf and ExportTokenizerFromGguf on a small SentencePiece-style GGUF built in
// memory: the two must agree, and both must follow SentencePiece's merge-by-score rule.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "kiln/formats/gguf.h"
#include "kiln/text/gguf_tokenizer_export.h"
#include "kiln/text/tokenizer.h"

namespace kiln::text {
namespace {

using Ids = std::vector<int32_t>;

// Writes GGUF v3 metadata (no tensors).
class GgufWriter {
 public:
  void String(const std::string& key, const std::string& value) {
    Key(key, 8);
    Str(value);
    ++count_;
  }
  void Bool(const std::string& key, bool value) {
    Key(key, 7);
    body_.push_back(value ? 1 : 0);
    ++count_;
  }
  void Uint32(const std::string& key, uint32_t value) {
    Key(key, 4);
    Pod(value);
    ++count_;
  }
  void Strings(const std::string& key, const std::vector<std::string>& values) {
    Key(key, 9);
    Pod(uint32_t{8});
    Pod(static_cast<uint64_t>(values.size()));
    for (const auto& v : values) Str(v);
    ++count_;
  }
  void Floats(const std::string& key, const std::vector<float>& values) {
    Key(key, 9);
    Pod(uint32_t{6});
    Pod(static_cast<uint64_t>(values.size()));
    for (float v : values) Pod(v);
    ++count_;
  }
  void Int32s(const std::string& key, const std::vector<int32_t>& values) {
    Key(key, 9);
    Pod(uint32_t{5});
    Pod(static_cast<uint64_t>(values.size()));
    for (int32_t v : values) Pod(v);
    ++count_;
  }
  std::vector<uint8_t> Finish() const {
    std::vector<uint8_t> out = {'G', 'G', 'U', 'F', 3, 0, 0, 0};
    auto put64 = [&](uint64_t v) {
      for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
    };
    put64(0);  // tensors
    put64(count_);
    out.insert(out.end(), body_.begin(), body_.end());
    while (out.size() % 32 != 0) out.push_back(0);
    return out;
  }

 private:
  template <typename T>
  void Pod(T v) {
    uint8_t b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    body_.insert(body_.end(), b, b + sizeof(T));
  }
  void Str(const std::string& s) {
    Pod(static_cast<uint64_t>(s.size()));
    body_.insert(body_.end(), s.begin(), s.end());
  }
  void Key(const std::string& key, uint32_t type) {
    Str(key);
    Pod(type);
  }
  std::vector<uint8_t> body_;
  uint64_t count_ = 0;
};

const std::string kMarker = "\xE2\x96\x81";

// <unk> <s> </s>, 256 byte tokens, then ▁ a b c ▁a bc ab ▁ab abc; scores prefer "bc" to "ab".
std::vector<uint8_t> SentencePieceGguf() {
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<int32_t> types = {2, 3, 3};
  static const char* hex = "0123456789ABCDEF";
  for (int b = 0; b < 256; ++b) {
    tokens.push_back(std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">");
    types.push_back(6);
  }
  for (const std::string& t :
       {kMarker, std::string("a"), std::string("b"), std::string("c"), kMarker + "a",
        std::string("bc"), std::string("ab"), kMarker + "ab", std::string("abc")}) {
    tokens.push_back(t);
    types.push_back(1);
  }
  std::vector<float> scores(tokens.size(), 0.0f);
  const size_t base = 259;
  // ▁ a b c: -1..-4, ▁a: -5, bc: -6, ab: -7, ▁ab: -8, abc: -9.
  for (size_t i = 0; i < 9; ++i) scores[base + i] = -1.0f - static_cast<float>(i);
  GgufWriter w;
  w.String("general.architecture", "llama");
  w.String("tokenizer.ggml.model", "llama");
  w.Strings("tokenizer.ggml.tokens", tokens);
  w.Floats("tokenizer.ggml.scores", scores);
  w.Int32s("tokenizer.ggml.token_type", types);
  w.Uint32("tokenizer.ggml.bos_token_id", 1);
  w.Uint32("tokenizer.ggml.eos_token_id", 2);
  w.Uint32("tokenizer.ggml.unknown_token_id", 0);
  w.Bool("tokenizer.ggml.add_bos_token", true);
  w.String("tokenizer.chat_template", "{{ messages }}");
  return w.Finish();
}

TEST(GgufTokenizerTest, SentencePieceMergesByScoreAndFallsBackToBytes) {
  std::vector<uint8_t> bytes = SentencePieceGguf();
  auto gguf = gguf::GgufFile::Parse(bytes, "mem.gguf");
  ASSERT_TRUE(gguf.ok()) << gguf.status().ToString();
  auto t = Tokenizer::FromGguf(*gguf);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  const int32_t marker = 259, b = 261, c = 262, ma = 263, bc = 264;
  // "▁abc": ▁a (-5) beats bc (-6) beats ab (-7); then ▁a+bc is not a token: [▁a, bc].
  EXPECT_EQ(t->Encode("abc"), (Ids{ma, bc}));
  EXPECT_EQ(t->Encode("abc", {.add_special_tokens = true}), (Ids{1, ma, bc}));
  // A space becomes ▁; "é" is not a token: its two UTF-8 bytes.
  EXPECT_EQ(t->Encode("c \xC3\xA9"), (Ids{marker, c, marker, 3 + 0xC3, 3 + 0xA9}));
  // Control tokens are read in the text only when asked; the piece after one gets its own ▁.
  EXPECT_EQ(t->Encode("</s>b"), (Ids{2, marker, b}));
  EXPECT_EQ(t->Decode(Ids{1, ma, bc, marker, 3 + 0xC3, 3 + 0xA9}, true), "abc \xC3\xA9");
}

TEST(GgufTokenizerTest, ExportLoadsBackWithTheSameIds) {
  std::vector<uint8_t> bytes = SentencePieceGguf();
  auto gguf = gguf::GgufFile::Parse(bytes, "mem.gguf");
  ASSERT_TRUE(gguf.ok());
  auto direct = Tokenizer::FromGguf(*gguf);
  ASSERT_TRUE(direct.ok());
  std::string dir = ::testing::TempDir() + "/kiln_gguf_export_test";
  ASSERT_TRUE(ExportTokenizerFromGguf(*gguf, dir).ok());
  auto exported = Tokenizer::FromJsonFile(dir + "/tokenizer.json");
  ASSERT_TRUE(exported.ok()) << exported.status().ToString();
  for (const char* text : {"abc", "ab abc  bca", " c\xC3\xA9 ", "<s>abc</s>", "", "\n"}) {
    EXPECT_EQ(exported->Encode(text), direct->Encode(text)) << text;
    EXPECT_EQ(exported->Encode(text, {.add_special_tokens = true}),
              direct->Encode(text, {.add_special_tokens = true}))
        << text;
  }
  auto config = ReadFileToString(dir + "/tokenizer_config.json");
  ASSERT_TRUE(config.ok());
  EXPECT_NE(config->find("\"chat_template\": \"{{ messages }}\""), std::string::npos);
  EXPECT_NE(config->find("\"add_bos_token\": true"), std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST(GgufTokenizerTest, MissingTokenizerIsAnError) {
  GgufWriter w;
  w.String("general.architecture", "llama");
  std::vector<uint8_t> bytes = w.Finish();
  auto gguf = gguf::GgufFile::Parse(bytes, "empty.gguf");
  ASSERT_TRUE(gguf.ok());
  auto t = Tokenizer::FromGguf(*gguf);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("empty.gguf"), std::string::npos);
}

}  // namespace
}  // namespace kiln::text
