// UTF-8 repair, the byte-level alphabet and NFC, checked against the Unicode standard's rules
// and examples (expected values come from the standard and from Python's unicodedata).
#include <gtest/gtest.h>

#include <string>

#include "kiln/text/byte_level.h"
#include "kiln/text/nfc.h"
#include "kiln/text/utf8.h"

namespace kiln::text {
namespace {

const std::string kFffd = "\xEF\xBF\xBD";

TEST(Utf8Test, SanitizeReplacesMaximalSubparts) {
  EXPECT_EQ(SanitizeUtf8("abc"), "abc");
  EXPECT_EQ(SanitizeUtf8("\xE4\xB8\xAD"), "\xE4\xB8\xAD");
  // A truncated 3-byte sequence is one maximal subpart: one U+FFFD.
  EXPECT_EQ(SanitizeUtf8("\xE4\xB8"
                         "a"),
            kFffd + "a");
  // Bytes that can never start a sequence are replaced one by one.
  EXPECT_EQ(SanitizeUtf8("\xC0\xAF"), kFffd + kFffd);
  EXPECT_EQ(SanitizeUtf8("\xFF"), kFffd);
  // A surrogate encoded in UTF-8 (ED A0 80) is not valid: ED has no valid continuation A0.
  EXPECT_EQ(SanitizeUtf8("\xED\xA0\x80"), kFffd + kFffd + kFffd);
  EXPECT_EQ(SanitizeUtf8("\xF0\x9F\x8D\x95"), "\xF0\x9F\x8D\x95");
}

TEST(Utf8Test, IncompleteSuffixLength) {
  EXPECT_EQ(IncompleteUtf8SuffixLength("ab"), 0u);
  EXPECT_EQ(IncompleteUtf8SuffixLength("a\xE4"), 1u);
  EXPECT_EQ(IncompleteUtf8SuffixLength("a\xE4\xB8"), 2u);
  EXPECT_EQ(IncompleteUtf8SuffixLength("a\xE4\xB8\xAD"), 0u);
  EXPECT_EQ(IncompleteUtf8SuffixLength("\xF0\x9F\x8D"), 3u);
  EXPECT_EQ(IncompleteUtf8SuffixLength("a\xB8"), 0u);  // stray continuation: never completes
}

TEST(Utf8Test, WhitespaceIsUnicodeWhiteSpace) {
  for (uint32_t cp :
       {0x09u, 0x0Au, 0x0Du, 0x20u, 0x85u, 0xA0u, 0x1680u, 0x2000u, 0x2028u, 0x3000u}) {
    EXPECT_TRUE(IsUnicodeWhitespace(cp)) << cp;
  }
  for (uint32_t cp : {0x00u, 0x1Cu, 0x41u, 0x200Bu, 0xFEFFu}) {
    EXPECT_FALSE(IsUnicodeWhitespace(cp)) << cp;
  }
}

TEST(ByteLevelTest, Gpt2Alphabet) {
  EXPECT_EQ(ByteLevelChar(' '), "\xC4\xA0");   // Ġ
  EXPECT_EQ(ByteLevelChar('\n'), "\xC4\x8A");  // Ċ
  EXPECT_EQ(ByteLevelChar('a'), "a");
  EXPECT_EQ(ByteLevelChar(0xAD), "\xC5\x83");  // soft hyphen is not printable: Ń
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  std::string encoded, decoded;
  ByteLevelEncode(all, &encoded);
  ASSERT_TRUE(ByteLevelDecode(encoded, &decoded));
  EXPECT_EQ(decoded, all);
  EXPECT_FALSE(ByteLevelDecode("\xE4\xB8\xAD", &decoded));  // 中 is not in the alphabet
}

TEST(NfcTest, ComposesAndReorders) {
  EXPECT_EQ(ToNfc("cafe\xCC\x81"), "caf\xC3\xA9");                           // e + U+0301 -> é
  EXPECT_EQ(ToNfc("\xE2\x84\xAB"), "\xC3\x85");                              // Angstrom sign -> Å
  EXPECT_EQ(ToNfc("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8"), "\xEA\xB0\x81");  // jamo -> 각
  EXPECT_EQ(ToNfc("\xEA\xB0\x80\xE1\x86\xA8"), "\xEA\xB0\x81");              // 가 + jamo T
  // q + U+0307 + U+0323: marks reorder by combining class, nothing composes.
  EXPECT_EQ(ToNfc("q\xCC\x87\xCC\xA3"), "q\xCC\xA3\xCC\x87");
  // e + U+0301 U+0302 U+0323 -> U+1EB9 U+0301 U+0302 (the second 230 mark is blocked).
  EXPECT_EQ(ToNfc("e\xCC\x81\xCC\x82\xCC\xA3"), "\xE1\xBA\xB9\xCC\x81\xCC\x82");
  // Composition exclusions stay decomposed: U+0958 -> U+0915 U+093C.
  EXPECT_EQ(ToNfc("\xE0\xA5\x98"), "\xE0\xA4\x95\xE0\xA4\xBC");
  EXPECT_EQ(ToNfc("plain ascii"), "plain ascii");
}

}  // namespace
}  // namespace kiln::text
