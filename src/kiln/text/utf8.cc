#include "kiln/text/utf8.h"

namespace kiln::text {
namespace {

// Length of the valid sequence at `pos`, or 0 if the bytes there are not a complete valid
// sequence. `*partial` is set to the number of bytes that are a valid but cut-off prefix.
size_t ValidSequenceAt(std::string_view s, size_t pos, size_t* partial) {
  *partial = 0;
  const auto* p = reinterpret_cast<const uint8_t*>(s.data()) + pos;
  size_t avail = s.size() - pos;
  uint8_t b0 = p[0];
  if (b0 < 0x80) return 1;
  size_t len;
  uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;  // no surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  size_t i = 1;
  for (; i < len && i < avail; ++i) {
    uint8_t b = p[i];
    uint8_t l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
    if (b < l || b > h) {
      *partial = i;  // a maximal subpart: these bytes become one U+FFFD
      return 0;
    }
  }
  if (i < len) {
    *partial = i;
    return 0;
  }
  return len;
}

}  // namespace

uint32_t DecodeUtf8At(std::string_view s, size_t* pos) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data()) + *pos;
  uint8_t b0 = p[0];
  size_t len = Utf8SequenceLength(b0);
  if (*pos + len > s.size()) len = 1;
  uint32_t cp;
  switch (len) {
    case 1:
      cp = b0;
      break;
    case 2:
      cp = ((b0 & 0x1Fu) << 6) | (p[1] & 0x3Fu);
      break;
    case 3:
      cp = ((b0 & 0x0Fu) << 12) | ((p[1] & 0x3Fu) << 6) | (p[2] & 0x3Fu);
      break;
    default:
      cp = ((b0 & 0x07u) << 18) | ((p[1] & 0x3Fu) << 12) | ((p[2] & 0x3Fu) << 6) | (p[3] & 0x3Fu);
  }
  *pos += len;
  return cp;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

size_t ValidUtf8PrefixLength(std::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    if (static_cast<uint8_t>(s[pos]) < 0x80) {
      ++pos;
      continue;
    }
    size_t partial;
    size_t len = ValidSequenceAt(s, pos, &partial);
    if (len == 0) return pos;
    pos += len;
  }
  return pos;
}

std::string SanitizeUtf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  while (pos < s.size()) {
    size_t partial;
    size_t len = ValidSequenceAt(s, pos, &partial);
    if (len > 0) {
      out.append(s.data() + pos, len);
      pos += len;
    } else {
      AppendUtf8(kReplacementChar, &out);
      pos += partial > 0 ? partial : 1;
    }
  }
  return out;
}

size_t IncompleteUtf8SuffixLength(std::string_view s) {
  size_t n = s.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    auto b = static_cast<uint8_t>(s[n - back]);
    if ((b & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
    size_t partial;
    size_t len = ValidSequenceAt(s, n - back, &partial);
    return (len == 0 && partial == back) ? back : 0;
  }
  return 0;
}

bool IsUnicodeWhitespace(uint32_t cp) {
  if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
  if (cp < 0x85) return false;
  return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
         cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

}  // namespace kiln::text
