#include "kiln/base/base64.h"

#include <array>
#include <cstdint>

namespace kiln {
namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

bool IsSpace(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

}  // namespace

std::string Base64Encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    uint32_t v = (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8) | uint8_t(bytes[i + 2]);
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (size_t rest = bytes.size() - i; rest > 0) {
    uint32_t v = uint8_t(bytes[i]) << 16;
    if (rest == 2) v |= uint8_t(bytes[i + 1]) << 8;
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::optional<std::string> Base64Decode(std::string_view text) {
  // Sextet values by character; -1 outside the alphabet. Images arrive this way, megabytes at a
  // time: one table lookup a character, the output sized once.
  static const auto table = [] {
    std::array<int8_t, 256> t;
    t.fill(-1);
    for (int i = 0; i < 64; ++i) t[static_cast<uint8_t>(kAlphabet[i])] = static_cast<int8_t>(i);
    return t;
  }();
  std::string out(text.size() / 4 * 3 + 3, '\0');
  size_t n = 0;
  uint32_t acc = 0;
  int count = 0;    // sextets in the current quantum
  int padding = 0;  // '=' seen (only at the end)
  for (char c : text) {
    const int s = table[static_cast<uint8_t>(c)];
    if (s >= 0) {
      if (padding > 0) return std::nullopt;
      acc = (acc << 6) | static_cast<uint32_t>(s);
      if (++count == 4) {
        out[n++] = static_cast<char>(acc >> 16);
        out[n++] = static_cast<char>((acc >> 8) & 0xff);
        out[n++] = static_cast<char>(acc & 0xff);
        acc = 0;
        count = 0;
      }
    } else if (c == '=') {
      if (count < 2 || ++padding + count > 4) return std::nullopt;
    } else if (!IsSpace(c)) {
      return std::nullopt;
    }
  }
  if (padding > 0) {
    if (count + padding != 4) return std::nullopt;
    if (count == 2) {
      out[n++] = static_cast<char>(acc >> 4);
    } else {  // 3
      out[n++] = static_cast<char>(acc >> 10);
      out[n++] = static_cast<char>((acc >> 2) & 0xff);
    }
  } else if (count != 0) {
    return std::nullopt;
  }
  out.resize(n);
  return out;
}

}  // namespace kiln
