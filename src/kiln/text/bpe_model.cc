#include "kiln/text/bpe_model.h"

#include <optional>
#include <queue>

#include "kiln/text/byte_level.h"
#include "kiln/text/utf8.h"

namespace kiln::text {

struct BpeModel::Cache {
  // Words longer than this are rare and would crowd out the common ones.
  static constexpr size_t kMaxWordBytes = 128;
  static constexpr size_t kCapacity = 1 << 16;
  std::mutex mu;
  std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> map;
};

namespace {

struct Symbol {
  int32_t id;
  int32_t prev;
  int32_t next;
  uint32_t begin;  // byte span of the word this symbol covers
  uint32_t len;
};

struct Candidate {
  float priority;  // lower merges first: a rank, or a negated score
  int32_t left;    // symbol index of the left half
  int32_t new_id;  // ranks: the merged token; scores: unused
  uint32_t len;    // scores: bytes the merged pair must cover to still be current
  bool operator<(const Candidate& o) const {
    // std::priority_queue pops the largest: invert so the lowest priority, then the leftmost,
    // comes out first.
    if (priority != o.priority) return priority > o.priority;
    return left > o.left;
  }
};

// Merges adjacent symbols, the lowest-priority candidate first, until none is left (the loop
// both BPE variants share). `propose(left)` offers a merge of symbol `left` with the next one;
// `merge(candidate, left, right)` returns false for a candidate gone stale, else updates `left`.
template <typename Propose, typename Merge>
void MergeSymbols(std::vector<Symbol>& symbols, Propose propose, Merge merge) {
  std::vector<Candidate> storage;
  storage.reserve(symbols.size() * 2);
  std::priority_queue<Candidate> queue(std::less<Candidate>(), std::move(storage));
  auto consider = [&](int32_t left) {
    if (left < 0 || symbols[left].next < 0) return;
    if (std::optional<Candidate> c = propose(left)) queue.push(*c);
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) consider(i);
  while (!queue.empty()) {
    Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.left];
    if (left.len == 0 || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    if (right.len == 0 || !merge(top, left, right)) continue;
    left.len += right.len;
    right.len = 0;
    left.next = right.next;
    if (left.next >= 0) symbols[left.next].prev = top.left;
    consider(left.prev);
    consider(top.left);
  }
}

uint64_t PairKey(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

std::string FallbackToken(uint8_t b) {
  static const char* hex = "0123456789ABCDEF";
  return std::string{'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
}

}  // namespace

BpeModel::BpeModel() = default;
BpeModel::BpeModel(BpeModel&&) noexcept = default;
BpeModel& BpeModel::operator=(BpeModel&&) noexcept = default;
BpeModel::~BpeModel() = default;

Result<BpeModel> BpeModel::Create(std::vector<std::string> vocab,
                                  const std::vector<std::pair<std::string, std::string>>& merges,
                                  std::vector<float> scores, const Options& options, bool strict) {
  BpeModel model;
  model.options_ = options;
  model.vocab_ = std::move(vocab);
  model.scores_ = std::move(scores);
  model.token_to_id_.reserve(model.vocab_.size());
  for (size_t id = 0; id < model.vocab_.size(); ++id) {
    if (model.vocab_[id].empty()) continue;
    model.token_to_id_[model.vocab_[id]] = static_cast<int32_t>(id);
  }
  if (options.use_scores && model.scores_.size() < model.vocab_.size()) {
    model.scores_.resize(model.vocab_.size(), 0.0f);
  }
  if (options.unk_id &&
      (*options.unk_id < 0 || static_cast<size_t>(*options.unk_id) >= model.vocab_.size())) {
    return Status::InvalidArgument("unknown token id " + std::to_string(*options.unk_id) +
                                   " is outside the vocabulary");
  }
  model.merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [a, b] = merges[rank];
    auto ia = model.token_to_id_.find(a);
    auto ib = model.token_to_id_.find(b);
    auto im = model.token_to_id_.find(a + b);
    if (ia == model.token_to_id_.end() || ib == model.token_to_id_.end() ||
        im == model.token_to_id_.end()) {
      if (strict) {
        return Status::InvalidArgument("merge " + std::to_string(rank) + " ('" + a + "' '" + b +
                                       "') names a token that is not in the vocabulary");
      }
      continue;
    }
    Merge m{static_cast<int32_t>(rank), im->second};
    uint64_t key = PairKey(ia->second, ib->second);
    if (strict) {
      model.merges_[key] = m;  // a repeated pair takes its last rank, as Hugging Face's map does
    } else {
      model.merges_.emplace(key, m);  // llama.cpp keeps the first
    }
  }
  for (int b = 0; b < 256; ++b) {
    auto it = model.token_to_id_.find(ByteLevelChar(static_cast<uint8_t>(b)));
    model.byte_ids_[b] = it == model.token_to_id_.end() ? -1 : it->second;
    auto fb = model.token_to_id_.find(FallbackToken(static_cast<uint8_t>(b)));
    model.fallback_ids_[b] = fb == model.token_to_id_.end() ? -1 : fb->second;
  }
  model.cache_ = std::make_unique<Cache>();
  return model;
}

std::optional<int32_t> BpeModel::TokenToId(std::string_view token) const {
  auto it = token_to_id_.find(token);
  if (it == token_to_id_.end()) return std::nullopt;
  return it->second;
}

void BpeModel::EncodeWord(std::string_view word, std::vector<int32_t>* out) const {
  if (word.empty()) return;
  bool cacheable = cache_ != nullptr && word.size() <= Cache::kMaxWordBytes;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_->mu);
    auto it = cache_->map.find(word);
    if (it != cache_->map.end()) {
      out->insert(out->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  size_t first = out->size();
  if (options_.use_scores) {
    EncodeByScores(word, out);
  } else {
    EncodeByRanks(word, out);
  }
  if (cacheable) {
    std::vector<int32_t> ids(out->begin() + first, out->end());
    std::lock_guard<std::mutex> lock(cache_->mu);
    if (cache_->map.size() >= Cache::kCapacity) cache_->map.clear();
    cache_->map.emplace(std::string(word), std::move(ids));
  }
}

void BpeModel::EncodeByRanks(std::string_view word, std::vector<int32_t>* out) const {
  if (options_.whole_newline_runs && word.find_first_not_of('\n') == std::string_view::npos) {
    auto it = token_to_id_.find(word);
    if (it != token_to_id_.end()) {
      out->push_back(it->second);
      return;
    }
  }
  if (options_.ignore_merges) {
    std::string alphabet;
    std::string_view key = word;
    if (options_.byte_level) {
      ByteLevelEncode(word, &alphabet);
      key = alphabet;
    }
    auto it = token_to_id_.find(key);
    if (it != token_to_id_.end()) {
      out->push_back(it->second);
      return;
    }
  }

  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  auto add = [&](int32_t id, size_t begin, size_t len) {
    int32_t index = static_cast<int32_t>(symbols.size());
    symbols.push_back(
        {id, index - 1, index + 1, static_cast<uint32_t>(begin), static_cast<uint32_t>(len)});
  };
  // Hugging Face's word building: known characters, byte fallback, then (fused) unknowns.
  int32_t pending_unk = -1;  // an unknown token waiting to be emitted (fused), and its start
  size_t pending_unk_begin = 0;
  size_t pos = 0;
  while (pos < word.size()) {
    size_t begin = pos;
    std::string_view ch;
    int32_t id = -1;
    if (options_.byte_level) {
      uint8_t b = static_cast<uint8_t>(word[pos++]);
      id = byte_ids_[b];
      ch = ByteLevelChar(b);
    } else {
      pos += Utf8SequenceLength(static_cast<uint8_t>(word[pos]));
      if (pos > word.size()) pos = word.size();
      ch = word.substr(begin, pos - begin);
      auto it = token_to_id_.find(ch);
      if (it != token_to_id_.end()) id = it->second;
    }
    if (id >= 0) {
      if (pending_unk >= 0) {
        add(pending_unk, pending_unk_begin, begin - pending_unk_begin);
        pending_unk = -1;
      }
      add(id, begin, pos - begin);
      continue;
    }
    if (options_.byte_fallback) {
      bool all = true;
      for (char c : ch) all = all && fallback_ids_[static_cast<uint8_t>(c)] >= 0;
      if (all) {
        for (char c : ch) add(fallback_ids_[static_cast<uint8_t>(c)], begin, pos - begin);
        continue;
      }
    }
    if (options_.unk_id) {
      if (pending_unk >= 0 && !options_.fuse_unk) {
        add(pending_unk, pending_unk_begin, begin - pending_unk_begin);
        pending_unk = -1;
      }
      if (pending_unk < 0) {
        pending_unk = *options_.unk_id;
        pending_unk_begin = begin;
      }
    }
  }
  if (pending_unk >= 0) add(pending_unk, pending_unk_begin, word.size() - pending_unk_begin);
  if (symbols.empty()) return;
  symbols.back().next = -1;

  MergeSymbols(
      symbols,
      [&](int32_t left) -> std::optional<Candidate> {
        auto it = merges_.find(PairKey(symbols[left].id, symbols[symbols[left].next].id));
        if (it == merges_.end()) return std::nullopt;
        return Candidate{static_cast<float>(it->second.rank), left, it->second.new_id, 0};
      },
      [&](const Candidate& top, Symbol& left, const Symbol& right) {
        auto it = merges_.find(PairKey(left.id, right.id));
        if (it == merges_.end() || it->second.new_id != top.new_id) return false;  // stale
        left.id = top.new_id;
        return true;
      });
  for (int32_t i = 0; i >= 0; i = symbols[i].next) out->push_back(symbols[i].id);
}

void BpeModel::AppendBytesOrUnk(std::string_view bytes, std::vector<int32_t>* out) const {
  for (char c : bytes) {
    int32_t id = fallback_ids_[static_cast<uint8_t>(c)];
    if (id < 0) {
      auto it = token_to_id_.find(std::string_view(&c, 1));
      id = it != token_to_id_.end() ? it->second : options_.unk_id.value_or(-1);
    }
    if (id >= 0) out->push_back(id);
  }
}

void BpeModel::EncodeByScores(std::string_view word, std::vector<int32_t>* out) const {
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  size_t pos = 0;
  while (pos < word.size()) {
    size_t begin = pos;
    pos = std::min(word.size(), pos + Utf8SequenceLength(static_cast<uint8_t>(word[pos])));
    int32_t index = static_cast<int32_t>(symbols.size());
    symbols.push_back({-1, index - 1, index + 1, static_cast<uint32_t>(begin),
                       static_cast<uint32_t>(pos - begin)});
  }
  symbols.back().next = -1;

  MergeSymbols(
      symbols,
      [&](int32_t left) -> std::optional<Candidate> {
        uint32_t len = symbols[left].len + symbols[symbols[left].next].len;
        auto it = token_to_id_.find(word.substr(symbols[left].begin, len));
        if (it == token_to_id_.end()) return std::nullopt;
        return Candidate{-scores_[it->second], left, it->second, len};
      },
      [](const Candidate& top, Symbol& left, const Symbol& right) {
        return left.len + right.len == top.len;  // otherwise stale
      });
  for (int32_t i = 0; i >= 0; i = symbols[i].next) {
    std::string_view text = word.substr(symbols[i].begin, symbols[i].len);
    auto it = token_to_id_.find(text);
    if (it != token_to_id_.end()) {
      out->push_back(it->second);
    } else {
      AppendBytesOrUnk(text, out);
    }
  }
}

}  // namespace kiln::text
