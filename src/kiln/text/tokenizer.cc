#include "kiln/text/tokenizer.h"

#include "kiln/text/utf8.h"

namespace kiln::text {

Tokenizer Tokenizer::FromParts(TokenizerParts parts) {
  return Tokenizer(std::make_shared<const TokenizerParts>(std::move(parts)));
}

void Tokenizer::EncodePiece(std::string text, bool at_origin, std::vector<Piece>* scratch,
                            std::vector<int32_t>* out) const {
  const TokenizerParts& p = *parts_;
  if (p.pre_tokenizer.empty()) {
    p.model.EncodeWord(text, out);
    return;
  }
  scratch->clear();
  scratch->push_back({std::move(text), at_origin});
  p.pre_tokenizer.Apply(scratch);
  for (const Piece& piece : *scratch) p.model.EncodeWord(piece.text, out);
}

std::vector<int32_t> Tokenizer::Encode(std::string_view text, const EncodeOptions& options) const {
  if (!parts_) return {};
  const TokenizerParts& p = *parts_;
  std::string sanitized;
  if (!IsValidUtf8(text)) {
    sanitized = SanitizeUtf8(text);
    text = sanitized;
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  if (options.add_special_tokens) ids.insert(ids.end(), p.prefix_ids.begin(), p.prefix_ids.end());

  std::vector<AddedVocabulary::Split> splits, inner;
  std::vector<Piece> scratch;
  p.added.SplitText(text, /*normalized=*/false, options.parse_special, &splits);
  for (const auto& split : splits) {
    if (split.id >= 0) {
      ids.push_back(split.id);
      continue;
    }
    std::string piece(text.substr(split.begin, split.end - split.begin));
    if (piece.empty()) continue;
    p.normalizer.Apply(&piece);
    bool at_origin = split.begin == 0;
    if (!p.added.has_normalized()) {
      EncodePiece(std::move(piece), at_origin, &scratch, &ids);
      continue;
    }
    p.added.SplitText(piece, /*normalized=*/true, options.parse_special, &inner);
    for (const auto& s : inner) {
      if (s.id >= 0) {
        ids.push_back(s.id);
      } else if (s.end > s.begin) {
        EncodePiece(piece.substr(s.begin, s.end - s.begin), at_origin && s.begin == 0, &scratch,
                    &ids);
      }
    }
  }
  if (options.add_special_tokens) ids.insert(ids.end(), p.suffix_ids.begin(), p.suffix_ids.end());
  return ids;
}

std::string Tokenizer::Decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  if (!parts_) return {};
  const TokenizerParts& p = *parts_;
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    const AddedToken* added = p.added.FindById(id);
    if (added != nullptr) {
      if (skip_special_tokens && added->special) continue;
      tokens.push_back(added->text);
      continue;
    }
    const std::string* token = IdToToken(id);
    if (token != nullptr) tokens.push_back(*token);
  }
  return p.decoder.Decode(std::move(tokens));
}

size_t Tokenizer::vocab_size() const {
  if (!parts_) return 0;
  size_t n = parts_->model.vocab().size();
  for (const auto& t : parts_->added.tokens()) n = std::max(n, static_cast<size_t>(t.id) + 1);
  return n;
}

std::optional<int32_t> Tokenizer::TokenToId(std::string_view token) const {
  if (!parts_) return std::nullopt;
  if (const AddedToken* added = parts_->added.FindByContent(token)) return added->id;
  return parts_->model.TokenToId(token);
}

const std::string* Tokenizer::IdToToken(int32_t id) const {
  if (!parts_) return nullptr;
  if (const AddedToken* added = parts_->added.FindById(id)) return &added->text;
  const auto& vocab = parts_->model.vocab();
  if (id < 0 || static_cast<size_t>(id) >= vocab.size() || vocab[id].empty()) return nullptr;
  return &vocab[id];
}

bool Tokenizer::IsSpecial(int32_t id) const {
  if (!parts_) return false;
  const AddedToken* added = parts_->added.FindById(id);
  return added != nullptr && added->special;
}

}  // namespace kiln::text
