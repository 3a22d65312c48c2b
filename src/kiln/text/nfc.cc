#include "kiln/text/nfc.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kiln/text/nfc_data.h"
#include "kiln/text/utf8.h"

namespace kiln::text {
namespace {

using namespace nfc_data;

constexpr uint32_t kHangulBase = 0xAC00, kJamoL = 0x1100, kJamoV = 0x1161, kJamoT = 0x11A7;
constexpr uint32_t kCountL = 19, kCountV = 21, kCountT = 28, kCountN = kCountV * kCountT,
                   kCountS = kCountL * kCountN;

bool MayChange(uint32_t cp) {
  if (cp < 0x300) return false;
  const CodeRange* end = kUnsafeRanges + kUnsafeRangesCount;
  const CodeRange* it = std::upper_bound(
      kUnsafeRanges, end, cp, [](uint32_t v, const CodeRange& r) { return v < r.first; });
  return it != kUnsafeRanges && cp <= (it - 1)->last;
}

uint8_t CombiningClass(uint32_t cp) {
  if (cp < 0x300) return 0;
  const ClassRange* end = kCombiningClasses + kCombiningClassesCount;
  const ClassRange* it = std::upper_bound(
      kCombiningClasses, end, cp, [](uint32_t v, const ClassRange& r) { return v < r.first; });
  if (it == kCombiningClasses || cp > (it - 1)->last) return 0;
  return (it - 1)->combining_class;
}

void Decompose(uint32_t cp, std::vector<uint32_t>* out) {
  if (cp >= kHangulBase && cp < kHangulBase + kCountS) {
    uint32_t s = cp - kHangulBase;
    out->push_back(kJamoL + s / kCountN);
    out->push_back(kJamoV + (s % kCountN) / kCountT);
    if (s % kCountT != 0) out->push_back(kJamoT + s % kCountT);
    return;
  }
  const Decomposition* end = kDecompositions + kDecompositionsCount;
  const Decomposition* it =
      std::lower_bound(kDecompositions, end, cp,
                       [](const Decomposition& d, uint32_t v) { return d.code_point < v; });
  if (it != end && it->code_point == cp) {
    out->insert(out->end(), kDecompositionPool + it->offset,
                kDecompositionPool + it->offset + it->length);
  } else {
    out->push_back(cp);
  }
}

// The primary composite of (first, second), or 0.
uint32_t Compose(uint32_t first, uint32_t second) {
  if (first >= kJamoL && first < kJamoL + kCountL && second >= kJamoV &&
      second < kJamoV + kCountV) {
    return kHangulBase + ((first - kJamoL) * kCountV + (second - kJamoV)) * kCountT;
  }
  bool lv_syllable =
      first >= kHangulBase && first < kHangulBase + kCountS && (first - kHangulBase) % kCountT == 0;
  if (lv_syllable && second > kJamoT && second < kJamoT + kCountT) {
    return first + (second - kJamoT);
  }
  uint64_t key = (static_cast<uint64_t>(first) << 32) | second;
  const Composition* end = kCompositions + kCompositionsCount;
  const Composition* it = std::lower_bound(
      kCompositions, end, key, [](const Composition& c, uint64_t v) { return c.pair < v; });
  return (it != end && it->pair == key) ? it->composite : 0;
}

}  // namespace

std::string ToNfc(std::string_view text) {
  size_t pos = 0;
  bool may_change = false;
  while (pos < text.size()) {
    if (static_cast<uint8_t>(text[pos]) < 0x80) {
      ++pos;
      continue;
    }
    if (MayChange(DecodeUtf8At(text, &pos))) {
      may_change = true;
      break;
    }
  }
  if (!may_change) return std::string(text);

  std::vector<uint32_t> cps;
  cps.reserve(text.size());
  pos = 0;
  while (pos < text.size()) Decompose(DecodeUtf8At(text, &pos), &cps);

  // Canonical ordering: stable sort of each run of non-starters by combining class.
  for (size_t i = 0; i < cps.size();) {
    if (CombiningClass(cps[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < cps.size() && CombiningClass(cps[j]) != 0) ++j;
    std::stable_sort(cps.begin() + i, cps.begin() + j,
                     [](uint32_t a, uint32_t b) { return CombiningClass(a) < CombiningClass(b); });
    i = j;
  }

  // Canonical composition (UAX #15): each character joins the last starter unless blocked.
  std::vector<uint32_t> out;
  out.reserve(cps.size());
  size_t starter = SIZE_MAX;
  int last_class = -1;
  for (uint32_t cp : cps) {
    int cls = CombiningClass(cp);
    if (starter != SIZE_MAX) {
      bool blocked = last_class != -1 && (last_class == 0 || last_class >= cls);
      if (!blocked) {
        if (uint32_t composite = Compose(out[starter], cp)) {
          out[starter] = composite;
          continue;
        }
      }
    }
    if (cls == 0) {
      starter = out.size();
      last_class = -1;
    } else {
      last_class = cls;
    }
    out.push_back(cp);
  }
  std::string result;
  result.reserve(text.size());
  for (uint32_t cp : out) AppendUtf8(cp, &result);
  return result;
}

}  // namespace kiln::text
