#include "kiln/text/decoder.h"

#include "kiln/text/byte_level.h"
#include "kiln/text/utf8.h"

namespace kiln::text {
Decoder::Step& Decoder::AddStep(Kind kind) {
  steps_.emplace_back();
  steps_.back().kind = kind;
  return steps_.back();
}

void Decoder::AddByteLevel() { AddStep(Kind::kByteLevel); }
void Decoder::AddMetaspace(std::string replacement, bool strip_first) {
  Step& s = AddStep(Kind::kMetaspace);
  s.content = std::move(replacement);
  s.strip_first = strip_first;
}
void Decoder::AddReplace(Regex pattern, std::string content) {
  Step& s = AddStep(Kind::kReplace);
  s.pattern = std::move(pattern);
  s.content = std::move(content);
}
void Decoder::AddByteFallback() { AddStep(Kind::kByteFallback); }
void Decoder::AddFuse() { AddStep(Kind::kFuse); }
void Decoder::AddStrip(std::string content, size_t start, size_t stop) {
  Step& s = AddStep(Kind::kStrip);
  s.content = std::move(content);
  s.start = start;
  s.stop = stop;
}

std::string Decoder::Decode(std::vector<std::string> tokens) const {
  if (steps_.empty()) {
    std::string out;
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i > 0) out.push_back(' ');
      out.append(tokens[i]);
    }
    return out;
  }
  std::vector<Regex::Match> matches;
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Kind::kByteLevel: {
        // A token with a character outside the alphabet (an added token) keeps its own bytes.
        std::string bytes;
        for (const auto& t : tokens) {
          size_t mark = bytes.size();
          if (!ByteLevelDecode(t, &bytes)) {
            bytes.resize(mark);
            bytes.append(t);
          }
        }
        tokens.assign(1, SanitizeUtf8(bytes));
        break;
      }
      case Kind::kMetaspace:
        for (size_t i = 0; i < tokens.size(); ++i) {
          std::string out;
          std::string_view t = tokens[i];
          for (size_t p = 0; p < t.size();) {
            if (t.compare(p, step.content.size(), step.content) == 0 && !step.content.empty()) {
              if (!(i == 0 && step.strip_first)) out.push_back(' ');
              p += step.content.size();
            } else {
              out.push_back(t[p++]);
            }
          }
          tokens[i] = std::move(out);
        }
        break;
      case Kind::kReplace:
        for (auto& t : tokens) {
          matches.clear();
          step.pattern.FindAll(t, &matches);
          if (matches.empty()) continue;
          std::string out;
          size_t prev = 0;
          for (const auto& m : matches) {
            out.append(t, prev, m.begin - prev);
            out.append(step.content);
            prev = m.end;
          }
          out.append(t, prev, std::string::npos);
          t = std::move(out);
        }
        break;
      case Kind::kByteFallback: {
        std::vector<std::string> out;
        std::string pending;
        auto flush = [&] {
          if (pending.empty()) return;
          if (IsValidUtf8(pending)) {
            out.push_back(pending);
          } else {
            for (size_t i = 0; i < pending.size(); ++i) out.push_back("\xEF\xBF\xBD");
          }
          pending.clear();
        };
        for (auto& t : tokens) {
          int b = ByteFallbackValue(t);
          if (b >= 0) {
            pending.push_back(static_cast<char>(b));
          } else {
            flush();
            out.push_back(std::move(t));
          }
        }
        flush();
        tokens = std::move(out);
        break;
      }
      case Kind::kFuse: {
        std::string all;
        for (const auto& t : tokens) all.append(t);
        tokens.assign(1, std::move(all));
        break;
      }
      case Kind::kStrip:
        for (auto& t : tokens) {
          size_t begin = 0, end = t.size();
          for (size_t n = 0;
               n < step.start && t.compare(begin, step.content.size(), step.content) == 0 &&
               begin < end;
               ++n) {
            begin += step.content.size();
          }
          for (size_t n = 0;
               n < step.stop && end >= begin + step.content.size() &&
               t.compare(end - step.content.size(), step.content.size(), step.content) == 0;
               ++n) {
            end -= step.content.size();
          }
          t = t.substr(begin, end - begin);
        }
        break;
    }
  }
  std::string out;
  for (const auto& t : tokens) out.append(t);
  return out;
}

}  // namespace kiln::text
