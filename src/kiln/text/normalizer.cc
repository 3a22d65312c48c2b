#include "kiln/text/normalizer.h"

#include "kiln/text/nfc.h"
#include "kiln/text/utf8.h"

namespace kiln::text {

void Normalizer::AddReplace(Regex pattern, std::string content) {
  Step s;
  s.kind = Kind::kReplace;
  s.pattern = std::move(pattern);
  s.content = std::move(content);
  steps_.push_back(std::move(s));
}
void Normalizer::AddPrepend(std::string prefix) {
  Step s;
  s.kind = Kind::kPrepend;
  s.content = std::move(prefix);
  steps_.push_back(std::move(s));
}
void Normalizer::AddStrip(bool left, bool right) {
  Step s;
  s.kind = Kind::kStrip;
  s.left = left;
  s.right = right;
  steps_.push_back(std::move(s));
}
void Normalizer::AddNfc() {
  Step s;
  s.kind = Kind::kNfc;
  steps_.push_back(std::move(s));
}

void Normalizer::Apply(std::string* text) const {
  std::vector<Regex::Match> matches;
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Kind::kReplace: {
        matches.clear();
        step.pattern.FindAll(*text, &matches);
        if (matches.empty()) break;
        std::string out;
        out.reserve(text->size() + matches.size() * step.content.size());
        size_t prev = 0;
        for (const auto& m : matches) {
          out.append(*text, prev, m.begin - prev);
          out.append(step.content);
          prev = m.end;
        }
        out.append(*text, prev, std::string::npos);
        *text = std::move(out);
        break;
      }
      case Kind::kPrepend:
        if (!text->empty()) text->insert(0, step.content);
        break;
      case Kind::kStrip: {
        size_t begin = 0, end = text->size();
        if (step.left) {
          while (begin < end) {
            size_t pos = begin;
            if (!IsUnicodeWhitespace(DecodeUtf8At(*text, &pos))) break;
            begin = pos;
          }
        }
        if (step.right) {
          while (end > begin) {
            size_t start = end - 1;
            while (start > begin && (static_cast<uint8_t>((*text)[start]) & 0xC0) == 0x80) --start;
            size_t pos = start;
            if (!IsUnicodeWhitespace(DecodeUtf8At(*text, &pos))) break;
            end = start;
          }
        }
        *text = text->substr(begin, end - begin);
        break;
      }
      case Kind::kNfc:
        *text = ToNfc(*text);
        break;
    }
  }
}

}  // namespace kiln::text
