#include "kiln/text/json_matcher.h"

#include <algorithm>

namespace kiln::text {
namespace {

enum State : uint8_t {
  kRootBefore,
  kRootAfter,
  kObjFirst,  // after '{'; a = first candidate property
  kObjKey,    // inside listed key a, b bytes of it matched
  kObjColon,  // after the key
  kObjValue,  // after ':'
  kObjAfter,  // after a value; a = first candidate for the next property
  kObjNext,   // after ','
  kArrFirst,  // after '['; a = items so far
  kArrValue,  // after ','
  kArrAfter,  // after an item
  kStrBody,   // a = code points so far
  kStrEscape,
  kStrHex,           // x: 0 plain, 1 low surrogate; b digits read; u value so far
  kStrLowBackslash,  // a high surrogate escape needs its low half next
  kStrLowU,
  kStrUtf8,  // x continuation bytes pending; the next one within y..b
  kNumMinus,
  kNumZero,  // x = 1 when negative; u integer part, a its digits; w fraction, b its digits
  kNumInt,
  kNumDot,
  kNumFrac,
  kNumExp,
  kNumExpSign,
  kNumExpDigits,  // y exponent digits
  kLitBody,       // literals[a..u) share the b bytes matched so far
};

constexpr uint32_t kMaxPlainDigits = 15;
constexpr uint8_t kMaxExponentDigits = 2;
// Ambiguity beyond this many stacks is dropped: it narrows the choices, never admits bad output.
constexpr size_t kMaxThreads = 256;
constexpr size_t kCompactAbove = 256;  // arena entries; keeps copies of a matcher small

bool IsWhitespace(int c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }
int DigitValue(int c) { return c >= '0' && c <= '9' ? c - '0' : -1; }
int HexValue(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

using Wide = __int128;

Wide Pow10(int n) {
  Wide v = 1;
  while (n-- > 0) v *= 10;
  return v;
}

int64_t NumberScale(const JsonNode& g) {
  return g.integer ? 1 : static_cast<int64_t>(Pow10(kJsonBoundedFractionDigits));
}

// The magnitudes a bounded number may have with the given sign; false if none. Negative zero
// is left out so "-0" never has to be judged.
bool MagnitudeRange(const JsonNode& g, bool negative, Wide* lo, Wide* hi) {
  if (negative) {
    *lo = std::max<Wide>(-static_cast<Wide>(g.high), 1);
    *hi = -static_cast<Wide>(g.low);
  } else {
    *lo = std::max<Wide>(g.low, 0);
    *hi = g.high;
  }
  return *lo <= *hi;
}

bool Intersects(Wide a, Wide b, Wide lo, Wide hi) { return a <= hi && b >= lo; }

// Whether integer-part digits `ip` (with more digits still possible unless ip is 0) can lead
// to a value in range.
bool IntegerPartViable(const JsonNode& g, bool negative, uint64_t ip) {
  Wide lo, hi;
  if (!MagnitudeRange(g, negative, &lo, &hi)) return false;
  const Wide scale = NumberScale(g);
  for (Wide width = 1;; width *= 10) {
    Wide first = static_cast<Wide>(ip) * width * scale;
    if (first > hi) return false;
    if (Intersects(first, (static_cast<Wide>(ip) + 1) * width * scale - 1, lo, hi)) return true;
    if (ip == 0) return false;
  }
}

// Whether fraction digits `fraction` (`digits` of them) after integer part `ip` can lead to a
// value in range; with `exact`, whether the value as written is in range.
bool FractionViable(const JsonNode& g, bool negative, uint64_t ip, uint64_t fraction,
                    uint32_t digits, bool exact) {
  Wide lo, hi;
  if (!MagnitudeRange(g, negative, &lo, &hi)) return false;
  const Wide unit = Pow10(kJsonBoundedFractionDigits - static_cast<int>(digits));
  Wide first = static_cast<Wide>(ip) * NumberScale(g) + static_cast<Wide>(fraction) * unit;
  if (exact) return first >= lo && first <= hi;
  return Intersects(first, first + unit - 1, lo, hi);
}

}  // namespace

bool JsonMatcher::NumberCanEnd(const JsonNode& g, const Frame& f) {
  switch (f.state) {
    case kNumZero:
    case kNumInt:
      return !g.bounded || FractionViable(g, f.x != 0, f.u, 0, 0, /*exact=*/true);
    case kNumFrac:
      return !g.bounded || FractionViable(g, f.x != 0, f.u, f.w, f.b, /*exact=*/true);
    case kNumExpDigits:
      return true;
    default:
      return false;
  }
}

JsonMatcher::JsonMatcher(std::shared_ptr<const JsonGrammar> grammar)
    : grammar_(std::move(grammar)),
      max_ws_(grammar_->options().max_whitespace_run),
      max_depth_(grammar_->options().max_depth) {
  Frame root;
  root.node = JsonGrammar::kRootNode;
  root.state = kRootBefore;
  arena_.push_back({root, -1, 0, 0});
  tops_.push_back(0);
}

JsonMatcher::JsonMatcher(const JsonMatcher& other)
    : grammar_(other.grammar_),
      max_ws_(other.max_ws_),
      max_depth_(other.max_depth_),
      arena_(other.arena_),
      tops_(other.tops_) {}

JsonMatcher& JsonMatcher::operator=(const JsonMatcher& other) {
  if (this != &other) {
    grammar_ = other.grammar_;
    max_ws_ = other.max_ws_;
    max_depth_ = other.max_depth_;
    arena_ = other.arena_;
    tops_ = other.tops_;
  }
  return *this;
}

int32_t JsonMatcher::Push(const Frame& frame, int32_t parent) {
  int32_t depth = 0;
  uint32_t below = 0;
  if (parent >= 0) {
    const Entry& p = arena_[parent];
    depth = p.depth + 1;
    below = SaturatingAdd(p.below, RestBytes(p));
  }
  arena_.push_back({frame, parent, depth, below});
  return static_cast<int32_t>(arena_.size() - 1);
}

// A parent frame that is only added to the arena once a child actually starts, so bytes that
// start nothing cost no arena entries.
struct JsonMatcher::PendingParent {
  const Frame* frame;
  int32_t parent;
  int32_t depth;
  int32_t index = -1;
};

int32_t JsonMatcher::Materialize(PendingParent* p) {
  if (p->index < 0) p->index = Push(*p->frame, p->parent);
  return p->index;
}

void JsonMatcher::Start(int32_t node, PendingParent* parent, int c, std::vector<int32_t>* out) {
  const JsonNode& g = grammar_->node(node);
  const int32_t depth = parent->depth + 1;
  if (depth + g.min_depth - 1 > max_depth_) return;
  Frame f;
  f.node = node;
  switch (g.kind) {
    case JsonNodeKind::kAnyOf:
      for (int32_t alt : g.alternatives) Start(alt, parent, c, out);
      return;
    case JsonNodeKind::kObject:
      if (c != '{') return;
      f.state = kObjFirst;
      break;
    case JsonNodeKind::kArray:
      if (c != '[') return;
      f.state = kArrFirst;
      break;
    case JsonNodeKind::kString:
      if (c != '"') return;
      f.state = kStrBody;
      break;
    case JsonNodeKind::kNumber:
      if (c == '-') {
        Wide lo, hi;
        if (g.bounded && !MagnitudeRange(g, true, &lo, &hi)) return;
        f.state = kNumMinus;
        f.x = 1;
      } else if (!NumberIntegerDigit(g, &f, c)) {
        return;
      }
      break;
    case JsonNodeKind::kLiteral: {
      f.state = kLitBody;
      f.a = 0;
      f.u = g.literals.size();
      int done = LiteralStep(g, &f, c);
      if (done < 0) return;
      if (done > 0) {
        out->push_back(Materialize(parent));
        return;
      }
      break;
    }
    case JsonNodeKind::kRoot:
      return;
  }
  out->push_back(Push(f, Materialize(parent)));
}

bool JsonMatcher::NumberIntegerDigit(const JsonNode& g, Frame* f, int c) {
  int d = DigitValue(c);
  if (d < 0) return false;
  if (f->a > 0 && f->u == 0) return false;  // no digits after a leading zero
  uint64_t ip = f->u * 10 + static_cast<uint64_t>(d);
  uint32_t digits = f->a + 1;
  if (g.bounded ? !IntegerPartViable(g, f->x != 0, ip) : digits > kMaxPlainDigits) return false;
  f->u = ip;
  f->a = digits;
  f->state = ip == 0 ? kNumZero : kNumInt;
  return true;
}

int JsonMatcher::LiteralStep(const JsonNode& g, Frame* f, int c) {
  if (c == kEnd) return -1;
  const auto& lits = g.literals;
  const uint32_t pos = f->b;
  const uint8_t byte = static_cast<uint8_t>(c);
  auto first = lits.begin() + f->a, last = lits.begin() + static_cast<ptrdiff_t>(f->u);
  // The range shares its first `pos` bytes and is sorted, so the byte splits it in three.
  auto lo = std::partition_point(first, last, [&](const std::string& s) {
    return s.size() <= pos || static_cast<uint8_t>(s[pos]) < byte;
  });
  auto hi = std::partition_point(
      lo, last, [&](const std::string& s) { return static_cast<uint8_t>(s[pos]) == byte; });
  if (lo == hi) return -1;
  f->a = static_cast<uint32_t>(lo - lits.begin());
  f->u = static_cast<uint64_t>(hi - lits.begin());
  f->b = pos + 1;
  return hi - lo == 1 && lo->size() == pos + 1 ? 1 : 0;
}

void JsonMatcher::Feed(int32_t top, int c, std::vector<int32_t>* out) {
  while (top >= 0) {
    Entry e = arena_[top];  // a copy: pushes below may move the arena
    Frame& f = e.frame;
    const JsonNode& g = grammar_->node(f.node);
    // Whitespace where the grammar allows a bounded run of it.
    auto whitespace = [&]() {
      if (f.ws >= max_ws_) return;
      ++f.ws;
      out->push_back(Push(f, e.parent));
    };
    auto stay = [&]() { out->push_back(Push(f, e.parent)); };
    auto start_child = [&](int32_t node) {
      PendingParent p{&f, e.parent, e.depth};
      Start(node, &p, c, out);
    };
    switch (g.kind) {
      case JsonNodeKind::kRoot:
        if (IsWhitespace(c)) return whitespace();
        if (f.state == kRootAfter) {
          if (c == kEnd) out->push_back(top);
          return;
        }
        if (c == kEnd) return;
        f.state = kRootAfter;
        f.ws = 0;
        return start_child(g.child);

      case JsonNodeKind::kObject: {
        const bool listed = g.additional < 0;
        const uint32_t count = static_cast<uint32_t>(g.properties.size());
        switch (f.state) {
          case kObjFirst:
          case kObjNext:
            if (IsWhitespace(c)) return whitespace();
            if (c == '}' && f.state == kObjFirst) {
              if (!listed || g.next_required[f.a] == count) out->push_back(e.parent);
              return;
            }
            if (c != '"') return;
            if (listed) {
              for (uint32_t j = f.a; j < count; ++j) {
                const auto& p = g.properties[j];
                if (e.depth + grammar_->node(p.value).min_depth <= max_depth_) {
                  Frame key = f;
                  key.state = kObjKey;
                  key.ws = 0;
                  key.a = j;
                  key.b = 1;
                  out->push_back(Push(key, e.parent));
                }
                if (p.required) break;
              }
              return;
            }
            if (e.depth + grammar_->node(g.additional).min_depth > max_depth_) return;
            f.state = kObjColon;
            f.ws = 0;
            {
              Frame key;
              key.node = grammar_->key_node();
              key.state = kStrBody;
              out->push_back(Push(key, Push(f, e.parent)));
            }
            return;
          case kObjKey: {
            const std::string& key = g.properties[f.a].key;
            if (c != static_cast<uint8_t>(key[f.b])) return;
            if (++f.b == key.size()) f.state = kObjColon;
            return stay();
          }
          case kObjColon:
            if (IsWhitespace(c)) return whitespace();
            if (c != ':') return;
            f.state = kObjValue;
            f.ws = 0;
            return stay();
          case kObjValue: {
            if (IsWhitespace(c)) return whitespace();
            int32_t value = listed ? g.properties[f.a].value : g.additional;
            f.state = kObjAfter;
            f.ws = 0;
            f.b = 0;
            if (listed) ++f.a;
            return start_child(value);
          }
          case kObjAfter:
            if (IsWhitespace(c)) return whitespace();
            if (c == '}') {
              if (!listed || g.next_required[f.a] == count) out->push_back(e.parent);
              return;
            }
            if (c != ',') return;
            if (listed) {
              bool any = false;
              for (uint32_t j = f.a; j < count && !any; ++j) {
                any = e.depth + grammar_->node(g.properties[j].value).min_depth <= max_depth_;
                if (g.properties[j].required) break;
              }
              if (!any) return;
            }
            f.state = kObjNext;
            f.ws = 0;
            return stay();
        }
        return;
      }

      case JsonNodeKind::kArray:
        switch (f.state) {
          case kArrFirst:
          case kArrValue:
            if (IsWhitespace(c)) return whitespace();
            if (c == ']' && f.state == kArrFirst) {
              if (g.min_items == 0) out->push_back(e.parent);
              return;
            }
            if (f.a >= g.max_items) return;
            f.state = kArrAfter;
            f.ws = 0;
            ++f.a;
            return start_child(g.items);
          case kArrAfter:
            if (IsWhitespace(c)) return whitespace();
            if (c == ']') {
              if (f.a >= g.min_items) out->push_back(e.parent);
              return;
            }
            if (c != ',' || f.a >= g.max_items) return;
            f.state = kArrValue;
            f.ws = 0;
            return stay();
        }
        return;

      case JsonNodeKind::kString:
        switch (f.state) {
          case kStrBody:
            if (c == '"') {
              if (f.a >= g.min_length) out->push_back(e.parent);
              return;
            }
            if (c == kEnd || c < 0x20 || f.a >= g.max_length) return;
            ++f.a;
            if (c == '\\') {
              f.state = kStrEscape;
            } else if (c >= 0x80) {
              // Well-formed UTF-8 only (Unicode table 3-7): no overlongs, no surrogates.
              uint8_t lo = 0x80, hi = 0xBF, pending;
              if (c >= 0xC2 && c <= 0xDF) {
                pending = 1;
              } else if (c >= 0xE0 && c <= 0xEF) {
                pending = 2;
                if (c == 0xE0) lo = 0xA0;
                if (c == 0xED) hi = 0x9F;
              } else if (c >= 0xF0 && c <= 0xF4) {
                pending = 3;
                if (c == 0xF0) lo = 0x90;
                if (c == 0xF4) hi = 0x8F;
              } else {
                return;
              }
              f.state = kStrUtf8;
              f.x = pending;
              f.y = lo;
              f.b = hi;
            }
            return stay();
          case kStrUtf8:
            if (c < f.y || c > static_cast<int>(f.b)) return;
            if (--f.x == 0) {
              f.state = kStrBody;
              f.y = 0;
              f.b = 0;
            } else {
              f.y = 0x80;
              f.b = 0xBF;
            }
            return stay();
          case kStrEscape:
            if (c == 'u') {
              f.state = kStrHex;
              f.x = 0;
              f.b = 0;
              f.u = 0;
              return stay();
            }
            if (c != '"' && c != '\\' && c != '/' && c != 'b' && c != 'f' && c != 'n' && c != 'r' &&
                c != 't') {
              return;
            }
            f.state = kStrBody;
            return stay();
          case kStrHex: {
            int h = HexValue(c);
            if (h < 0) return;
            if (f.x == 0) {
              if (f.b == 1 && f.u == 0xD && h >= 0xC) return;  // a lone low surrogate
            } else if ((f.b == 0 && h != 0xD) || (f.b == 1 && h < 0xC)) {
              return;  // a high surrogate must be followed by a low one
            }
            f.u = f.u * 16 + static_cast<uint64_t>(h);
            if (++f.b == 4) {
              f.state = f.x == 0 && f.u >= 0xD800 && f.u <= 0xDBFF ? kStrLowBackslash : kStrBody;
              f.x = 0;
              f.b = 0;
              f.u = 0;
            }
            return stay();
          }
          case kStrLowBackslash:
            if (c != '\\') return;
            f.state = kStrLowU;
            return stay();
          case kStrLowU:
            if (c != 'u') return;
            f.state = kStrHex;
            f.x = 1;
            return stay();
        }
        return;

      case JsonNodeKind::kNumber: {
        const bool plain = !g.integer && !g.bounded;
        switch (f.state) {
          case kNumMinus:
            if (NumberIntegerDigit(g, &f, c)) return stay();
            return;
          case kNumZero:
          case kNumInt:
            if (f.state == kNumInt && NumberIntegerDigit(g, &f, c)) return stay();
            if (c == '.' && !g.integer &&
                (!g.bounded || FractionViable(g, f.x != 0, f.u, 0, 0, false))) {
              f.state = kNumDot;
              return stay();
            }
            if ((c == 'e' || c == 'E') && plain) {
              f.state = kNumExp;
              return stay();
            }
            break;
          case kNumDot:
          case kNumFrac: {
            int d = DigitValue(c);
            if (d >= 0) {
              uint64_t fraction = f.w * 10 + static_cast<uint64_t>(d);
              uint32_t digits = f.b + 1;
              bool ok = g.bounded ? digits <= static_cast<uint32_t>(kJsonBoundedFractionDigits) &&
                                        FractionViable(g, f.x != 0, f.u, fraction, digits, false)
                                  : digits <= kMaxPlainDigits;
              if (!ok) return;
              f.w = fraction;
              f.b = digits;
              f.state = kNumFrac;
              return stay();
            }
            if (f.state == kNumFrac && (c == 'e' || c == 'E') && plain) {
              f.state = kNumExp;
              return stay();
            }
            break;
          }
          case kNumExp:
            if (c == '+' || c == '-') {
              f.state = kNumExpSign;
              return stay();
            }
            [[fallthrough]];
          case kNumExpSign:
          case kNumExpDigits:
            if (DigitValue(c) >= 0 && f.y < kMaxExponentDigits) {
              ++f.y;
              f.state = kNumExpDigits;
              return stay();
            }
            break;
        }
        if (!NumberCanEnd(g, f)) return;
        top = e.parent;  // the number ended before `c`: the parent reads it
        continue;
      }

      case JsonNodeKind::kLiteral: {
        int done = LiteralStep(g, &f, c);
        if (done > 0) {
          out->push_back(e.parent);
          return;
        }
        if (done == 0) return stay();
        if (g.literals[e.frame.a].size() != e.frame.b) return;
        top = e.parent;  // a whole literal (a number) that ended before `c`
        continue;
      }

      case JsonNodeKind::kAnyOf:
        return;  // alternatives are started directly; never on a stack
    }
    return;
  }
}

bool JsonMatcher::SameStack(int32_t x, int32_t y) const {
  while (x != y) {
    if (x < 0 || y < 0 || !(arena_[x].frame == arena_[y].frame)) return false;
    x = arena_[x].parent;
    y = arena_[y].parent;
  }
  return true;
}

void JsonMatcher::Step(const std::vector<int32_t>& from, int c, std::vector<int32_t>* to) {
  to->clear();
  for (int32_t top : from) Feed(top, c, to);
  if (to->size() < 2) return;
  size_t kept = 0;
  for (size_t i = 0; i < to->size() && kept < kMaxThreads; ++i) {
    bool seen = false;
    for (size_t j = 0; j < kept && !seen; ++j) seen = SameStack((*to)[i], (*to)[j]);
    if (!seen) (*to)[kept++] = (*to)[i];
  }
  to->resize(kept);
}

bool JsonMatcher::Accept(std::string_view bytes) {
  const size_t mark = arena_.size();
  std::vector<int32_t> current = tops_;
  for (char ch : bytes) {
    Step(current, static_cast<uint8_t>(ch), &scratch_);
    if (scratch_.empty()) {
      arena_.resize(mark);
      return false;
    }
    current.swap(scratch_);
  }
  tops_ = std::move(current);
  if (arena_.size() > kCompactAbove) Compact();
  return true;
}

bool JsonMatcher::AcceptsEnd(int32_t top) const {
  while (top >= 0) {
    const Entry& e = arena_[top];
    const JsonNode& g = grammar_->node(e.frame.node);
    switch (g.kind) {
      case JsonNodeKind::kRoot:
        return e.frame.state == kRootAfter;
      case JsonNodeKind::kNumber:
        if (!NumberCanEnd(g, e.frame)) return false;
        break;
      case JsonNodeKind::kLiteral:
        if (g.literals[e.frame.a].size() != e.frame.b) return false;
        break;
      default:
        return false;
    }
    top = e.parent;
  }
  return false;
}

bool JsonMatcher::IsComplete() const {
  return std::any_of(tops_.begin(), tops_.end(), [&](int32_t t) { return AcceptsEnd(t); });
}

uint32_t JsonMatcher::RestBytes(const Entry& e) const {
  const Frame& f = e.frame;
  const JsonNode& g = grammar_->node(f.node);
  // The value of this frame may nest `levels` deep; its children one less.
  const int levels = max_depth_ - e.depth + 1;
  switch (g.kind) {
    case JsonNodeKind::kRoot:
      return f.state == kRootAfter ? 0 : grammar_->min_document_bytes();
    case JsonNodeKind::kObject: {
      if (g.additional >= 0) {  // free-form keys
        const uint32_t value = grammar_->min_value_bytes(g.additional, levels - 1);
        switch (f.state) {
          case kObjColon:
            return SaturatingAdd(value, 2);  // :value}
          case kObjValue:
            return SaturatingAdd(value, 1);
          case kObjNext:
            return SaturatingAdd(value, 4);  // "":value}
          default:
            return 1;
        }
      }
      const auto required_after = [&](uint32_t first) {
        return SaturatingAdd(grammar_->min_required_bytes(f.node, first, levels), 1);
      };
      const auto value_then_rest = [&]() {
        return SaturatingAdd(grammar_->min_value_bytes(g.properties[f.a].value, levels - 1),
                             required_after(f.a + 1));
      };
      switch (f.state) {
        case kObjFirst:  // members without a leading comma, then '}'
          return std::max<uint32_t>(grammar_->min_required_bytes(f.node, f.a, levels), 1);
        case kObjKey:
          return SaturatingAdd(static_cast<uint32_t>(g.properties[f.a].key.size() - f.b) + 1,
                               value_then_rest());
        case kObjColon:
          return SaturatingAdd(1, value_then_rest());
        case kObjValue:
          return value_then_rest();
        case kObjAfter:
          return required_after(f.a);
        case kObjNext:
          return SaturatingAdd(grammar_->min_member_bytes(f.node, f.a, levels), 1);
      }
      return kJsonNoCompletion;
    }
    case JsonNodeKind::kArray: {
      // Each item is its value and a comma or, for the last, the closing bracket.
      const uint32_t item = SaturatingAdd(grammar_->min_value_bytes(g.items, levels - 1), 1);
      // kArrValue: after ',', where one more item must come.
      const uint32_t items = f.state == kArrValue ? f.a + 1 : f.a;
      const uint32_t missing =
          (g.min_items > items ? g.min_items - items : 0) + (f.state == kArrValue ? 1 : 0);
      const uint32_t bytes = static_cast<uint32_t>(
          std::min<uint64_t>(static_cast<uint64_t>(missing) * item, kJsonNoCompletion));
      // After '[' or an item, the bracket may close at once; otherwise the last item closes it.
      return f.state == kArrAfter || missing == 0 ? SaturatingAdd(bytes, 1) : bytes;
    }
    case JsonNodeKind::kString: {
      const uint32_t close =
          1 + (g.min_length > f.a ? std::min(g.min_length - f.a, kJsonNoCompletion - 2) : 0);
      switch (f.state) {
        case kStrEscape:
          return SaturatingAdd(close, 1);
        case kStrHex: {
          // Four digits that begin D8..DB make a high surrogate, which a \uDC00 must follow.
          const bool high = f.x == 0 && ((f.b == 2 && f.u >= 0xD8 && f.u <= 0xDB) ||
                                         (f.b == 3 && f.u >= 0xD80 && f.u <= 0xDBF));
          return SaturatingAdd(close, 4 - f.b + (high ? 6 : 0));
        }
        case kStrLowBackslash:
          return SaturatingAdd(close, 6);
        case kStrLowU:
          return SaturatingAdd(close, 5);
        case kStrUtf8:
          return SaturatingAdd(close, f.x);
        default:
          return close;
      }
    }
    case JsonNodeKind::kNumber:
      switch (f.state) {
        case kNumMinus:
          return MinNumberEnding(g, true, 0, 0, -1, 0);
        case kNumZero:
        case kNumInt:
          return MinNumberEnding(g, f.x != 0, f.u, f.a, -1, 0);
        case kNumDot:
        case kNumFrac:
          return MinNumberEnding(g, f.x != 0, f.u, f.a, static_cast<int>(f.b), f.w);
        case kNumExp:
        case kNumExpSign:
          return 1;
        default:
          return 0;
      }
    case JsonNodeKind::kLiteral:
      return grammar_->min_literal_size(f.node, f.a, static_cast<uint32_t>(f.u)) - f.b;
    case JsonNodeKind::kAnyOf:
      break;
  }
  return kJsonNoCompletion;
}

uint32_t JsonMatcher::MinCompletionBytes(const std::vector<int32_t>& threads) const {
  uint32_t best = kJsonNoCompletion;
  for (int32_t top : threads) {
    const Entry& e = arena_[top];
    best = std::min(best, SaturatingAdd(e.below, RestBytes(e)));
  }
  return best;
}

std::string JsonMatcher::StateKey() const {
  std::vector<std::string> stacks;
  for (int32_t top : tops_) {
    std::string stack;
    for (int32_t i = top; i >= 0; i = arena_[i].parent) {
      const Frame& f = arena_[i].frame;
      stack += std::to_string(f.node) + ":" + std::to_string(f.state) + ":" + std::to_string(f.ws) +
               ":" + std::to_string(f.x) + ":" + std::to_string(f.y) + ":" + std::to_string(f.a) +
               ":" + std::to_string(f.b) + ":" + std::to_string(f.u) + ":" + std::to_string(f.w) +
               "/";
    }
    stacks.push_back(std::move(stack));
  }
  std::sort(stacks.begin(), stacks.end());
  stacks.erase(std::unique(stacks.begin(), stacks.end()), stacks.end());
  std::string key;
  for (const std::string& s : stacks) key += s + "|";
  return key;
}

bool JsonMatcher::InStringBody(int32_t top, uint32_t* room) const {
  const Frame& f = arena_[top].frame;
  const JsonNode& g = grammar_->node(f.node);
  if (g.kind != JsonNodeKind::kString || f.state != kStrBody) return false;
  *room = g.max_length == kJsonUnbounded ? kJsonUnbounded : g.max_length - f.a;
  return true;
}

void JsonMatcher::Compact() {
  std::vector<int32_t> remap(arena_.size(), -1);
  std::vector<Entry> kept;
  std::vector<int32_t> chain;
  for (int32_t& top : tops_) {
    chain.clear();
    for (int32_t i = top; i >= 0 && remap[i] < 0; i = arena_[i].parent) chain.push_back(i);
    for (size_t k = chain.size(); k-- > 0;) {
      Entry entry = arena_[chain[k]];
      entry.parent = entry.parent >= 0 ? remap[entry.parent] : -1;
      kept.push_back(entry);
      remap[chain[k]] = static_cast<int32_t>(kept.size() - 1);
    }
    top = remap[top];
  }
  arena_ = std::move(kept);
}

}  // namespace kiln::text
