#include "kiln/text/byte_level.h"

#include <array>

#include "kiln/text/utf8.h"

namespace kiln::text {
namespace {

struct Tables {
  std::array<std::string, 256> byte_to_char;
  std::array<int16_t, 512> char_to_byte;  // every alphabet code point is below U+0200

  Tables() {
    char_to_byte.fill(-1);
    int next = 0;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      uint32_t cp = printable ? static_cast<uint32_t>(b) : 256u + next++;
      AppendUtf8(cp, &byte_to_char[b]);
      char_to_byte[cp] = static_cast<int16_t>(b);
    }
  }
};

const Tables& GetTables() {
  static const Tables tables;
  return tables;
}

}  // namespace

const std::string& ByteLevelChar(uint8_t byte) { return GetTables().byte_to_char[byte]; }

void ByteLevelEncode(std::string_view raw, std::string* out) {
  const auto& t = GetTables();
  for (char c : raw) out->append(t.byte_to_char[static_cast<uint8_t>(c)]);
}

bool ByteLevelDecode(std::string_view text, std::string* out) {
  const auto& t = GetTables();
  size_t pos = 0;
  while (pos < text.size()) {
    uint32_t cp = DecodeUtf8At(text, &pos);
    if (cp >= t.char_to_byte.size() || t.char_to_byte[cp] < 0) return false;
    out->push_back(static_cast<char>(t.char_to_byte[cp]));
  }
  return true;
}

namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

int ByteFallbackValue(std::string_view token) {
  if (token.size() != 6 || token.substr(0, 3) != "<0x" || token[5] != '>') return -1;
  int hi = HexValue(token[3]), lo = HexValue(token[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

}  // namespace kiln::text
