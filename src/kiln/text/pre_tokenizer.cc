#include "kiln/text/pre_tokenizer.h"

#include <algorithm>

namespace kiln::text {
namespace {

struct Segment {
  size_t begin, end;
  bool is_match;
};

// Segments of `text` in order: the matches of `pattern` (or, inverted, the gaps between them)
// and the rest, as Hugging Face's Pattern::find_matches lays them out.
void FindSegments(const Regex& pattern, bool invert, std::string_view text,
                  std::vector<Regex::Match>* matches, std::vector<Segment>* out) {
  out->clear();
  if (text.empty()) {
    out->push_back({0, 0, false});
    return;
  }
  matches->clear();
  pattern.FindAll(text, matches);
  size_t prev = 0;
  for (const auto& m : *matches) {
    if (prev != m.begin) out->push_back({prev, m.begin, invert});
    out->push_back({m.begin, m.end, !invert});
    prev = m.end;
  }
  if (prev != text.size()) out->push_back({prev, text.size(), invert});
}

// Applies `behavior` to segments, producing [begin, end) ranges (possibly empty).
void ApplyBehavior(SplitBehavior behavior, const std::vector<Segment>& segments,
                   std::vector<Segment>* out) {
  out->clear();
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::kRemoved:
      for (const auto& s : segments) {
        if (!s.is_match) out->push_back(s);
      }
      break;
    case SplitBehavior::kIsolated:
      *out = segments;
      break;
    case SplitBehavior::kMergedWithPrevious:
      for (const auto& s : segments) {
        if (s.is_match && !previous_match && !out->empty()) {
          out->back().end = s.end;
        } else {
          out->push_back({s.begin, s.end, false});
        }
        previous_match = s.is_match;
      }
      break;
    case SplitBehavior::kMergedWithNext:
      for (size_t i = segments.size(); i-- > 0;) {
        const auto& s = segments[i];
        if (s.is_match && !previous_match && !out->empty()) {
          out->back().begin = s.begin;
        } else {
          out->push_back({s.begin, s.end, false});
        }
        previous_match = s.is_match;
      }
      std::reverse(out->begin(), out->end());
      break;
    case SplitBehavior::kContiguous:
      for (size_t i = 0; i < segments.size(); ++i) {
        const auto& s = segments[i];
        if (i > 0 && s.is_match == previous_match) {
          out->back().end = s.end;
        } else {
          out->push_back({s.begin, s.end, false});
        }
        previous_match = s.is_match;
      }
      break;
  }
}

}  // namespace

const char* const PreTokenizer::kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

Result<SplitBehavior> ParseSplitBehavior(std::string_view name) {
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  return Status::InvalidArgument("unknown split behavior '" + std::string(name) + "'");
}

void PreTokenizer::AddSplit(Regex pattern, SplitBehavior behavior, bool invert) {
  Step step;
  step.kind = Kind::kSplit;
  step.pattern = std::move(pattern);
  step.behavior = behavior;
  step.invert = invert;
  steps_.push_back(std::move(step));
}

Status PreTokenizer::AddPatternSplit(std::string_view pattern, SplitBehavior behavior,
                                     bool invert) {
  KILN_ASSIGN_OR_RETURN(Regex regex, Regex::FromOniguruma(pattern));
  AddSplit(std::move(regex), behavior, invert);
  return Status::Ok();
}

Status PreTokenizer::AddByteLevel(bool add_prefix_space, bool use_regex) {
  has_byte_level_ = true;
  if (add_prefix_space) {
    Step step;
    step.kind = Kind::kPrefixSpace;
    steps_.push_back(std::move(step));
  }
  if (use_regex) return AddPatternSplit(kGpt2Pattern, SplitBehavior::kIsolated, false);
  return Status::Ok();
}

Status PreTokenizer::AddDigits(bool individual_digits) {
  // Rust's char::is_numeric (categories Nd, Nl, No), one match per character.
  return AddPatternSplit(
      "\\p{N}", individual_digits ? SplitBehavior::kIsolated : SplitBehavior::kContiguous, false);
}

void PreTokenizer::AddMetaspace(std::string replacement, PrependScheme scheme, bool split) {
  Step step;
  step.kind = Kind::kMetaspace;
  step.replacement = std::move(replacement);
  step.scheme = scheme;
  step.split = split;
  steps_.push_back(std::move(step));
}

Status PreTokenizer::AddWhitespace() {
  return AddPatternSplit("\\w+|[^\\w\\s]+", SplitBehavior::kRemoved, true);
}

Status PreTokenizer::AddWhitespaceSplit() {
  return AddPatternSplit("\\s+", SplitBehavior::kRemoved, false);
}

Status PreTokenizer::AddPunctuation(SplitBehavior behavior) {
  // Rust's is_ascii_punctuation or a Unicode P* category, one match per character.
  return AddPatternSplit("[\\p{P}!-/:-@\\[-`{-~]", behavior, false);
}

void PreTokenizer::Apply(std::vector<Piece>* pieces) const {
  std::vector<Regex::Match> matches;
  std::vector<Segment> segments, ranges;
  std::vector<Piece> next;
  for (const Step& step : steps_) {
    next.clear();
    for (Piece& piece : *pieces) {
      switch (step.kind) {
        case Kind::kPrefixSpace:
          if (piece.text.empty() || piece.text[0] != ' ') piece.text.insert(0, " ");
          next.push_back(std::move(piece));
          continue;
        case Kind::kMetaspace: {
          std::string replaced;
          replaced.reserve(piece.text.size() + step.replacement.size());
          bool prepend = step.scheme == PrependScheme::kAlways ||
                         (step.scheme == PrependScheme::kFirst && piece.at_origin);
          bool starts_with_replacement =
              piece.text.compare(0, step.replacement.size(), step.replacement) == 0 ||
              (!piece.text.empty() && piece.text[0] == ' ');
          if (prepend && !starts_with_replacement && !piece.text.empty()) {
            replaced.append(step.replacement);
          }
          for (char c : piece.text) {
            if (c == ' ') {
              replaced.append(step.replacement);
            } else {
              replaced.push_back(c);
            }
          }
          if (!step.split) {
            if (!replaced.empty()) next.push_back({std::move(replaced), piece.at_origin});
            continue;
          }
          // Each replacement character starts a new word (MergedWithNext).
          segments.clear();
          size_t prev = 0;
          for (size_t found = replaced.find(step.replacement); found != std::string::npos;
               found = replaced.find(step.replacement, found + step.replacement.size())) {
            if (found > prev) segments.push_back({prev, found, false});
            segments.push_back({found, found + step.replacement.size(), true});
            prev = found + step.replacement.size();
          }
          if (prev < replaced.size()) segments.push_back({prev, replaced.size(), false});
          ApplyBehavior(SplitBehavior::kMergedWithNext, segments, &ranges);
          for (const auto& r : ranges) {
            if (r.end > r.begin) {
              next.push_back(
                  {replaced.substr(r.begin, r.end - r.begin), piece.at_origin && r.begin == 0});
            }
          }
          continue;
        }
        case Kind::kSplit:
          break;
      }
      FindSegments(step.pattern, step.invert, piece.text, &matches, &segments);
      ApplyBehavior(step.behavior, segments, &ranges);
      if (ranges.size() == 1 && ranges[0].begin == 0 && ranges[0].end == piece.text.size()) {
        if (!piece.text.empty()) next.push_back(std::move(piece));
        continue;
      }
      for (const auto& r : ranges) {
        if (r.end > r.begin) {
          next.push_back(
              {piece.text.substr(r.begin, r.end - r.begin), piece.at_origin && r.begin == 0});
        }
      }
    }
    pieces->swap(next);
  }
}

}  // namespace kiln::text
