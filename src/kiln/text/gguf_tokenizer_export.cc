#include "kiln/text/gguf_tokenizer_export.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <numeric>
#include <unordered_map>
#include <unordered_set>

#include "kiln/base/mapped_file.h"
#include "kiln/text/gguf_tokenizer.h"
#include "kiln/text/utf8.h"

namespace kiln::text {
namespace {

using Json = nlohmann::json;
constexpr const char* kMarker = "\xE2\x96\x81";  // SentencePiece's visible space
// What transformers writes when a tokenizer has no length limit: int(1e30).
constexpr double kNoMaxLength = 1e30;

Json SplitPattern(const std::string& regex) {
  return Json{{"type", "Split"},
              {"pattern", {{"Regex", regex}}},
              {"behavior", "Isolated"},
              {"invert", false}};
}

// Hugging Face BPE merges equivalent to SentencePiece's merge order: every way to build a token
// from two tokens, ranked by the token's score (higher first), then by id.
std::vector<std::pair<std::string, std::string>> MergesFromScores(const GgufTokenizerSpec& spec) {
  std::unordered_map<std::string_view, int32_t> ids;
  ids.reserve(spec.tokens.size());
  for (size_t i = 0; i < spec.tokens.size(); ++i) {
    ids.emplace(spec.tokens[i], static_cast<int32_t>(i));
  }
  std::vector<int32_t> order(spec.tokens.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return spec.scores[a] > spec.scores[b]; });
  std::vector<std::pair<std::string, std::string>> merges;
  for (int32_t id : order) {
    if (spec.IsAddedToken(id)) continue;
    std::string_view t = spec.tokens[id];
    size_t pos = 0;
    while (pos < t.size()) {
      pos += Utf8SequenceLength(static_cast<uint8_t>(t[pos]));
      if (pos >= t.size()) break;
      std::string_view left = t.substr(0, pos), right = t.substr(pos);
      if (ids.count(left) && ids.count(right)) merges.emplace_back(left, right);
    }
  }
  return merges;
}

// Gemma 4 keeps a run of newlines whole when it is a token; Hugging Face BPE cannot say that,
// so those tokens become (non-special) added tokens, which match whole runs the same way up to
// the longest such token.
bool IsNewlineRunToken(const GgufTokenizerSpec& spec, size_t id) {
  return spec.whole_newline_runs && !spec.IsAddedToken(id) &&
         spec.tokens[id].find_first_not_of('\n') == std::string::npos;
}

Json TokenizerJson(const GgufTokenizerSpec& spec) {
  const bool spm = spec.kind == GgufTokenizerSpec::Kind::kSentencePiece;
  const bool raw = spec.kind == GgufTokenizerSpec::Kind::kBytePairRaw;
  Json added = Json::array();
  for (size_t id = 0; id < spec.tokens.size(); ++id) {
    if (!spec.IsAddedToken(id) && !IsNewlineRunToken(spec, id)) continue;
    bool rstrip = std::find(spec.rstrip_ids.begin(), spec.rstrip_ids.end(),
                            static_cast<int32_t>(id)) != spec.rstrip_ids.end();
    added.push_back({{"id", id},
                     {"content", spec.tokens[id]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", rstrip},
                     {"normalized", false},
                     {"special", spec.IsSpecialToken(id)}});
  }

  Json normalizer = nullptr, pre_tokenizer = nullptr, decoder;
  if (raw) {
    normalizer = {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kMarker}};
    Json steps = Json::array();
    for (const auto& r : spec.split_regexes) steps.push_back(SplitPattern(r));
    pre_tokenizer = {{"type", "Sequence"}, {"pretokenizers", steps}};
    Json decoders = Json::array();
    decoders.push_back({{"type", "Replace"}, {"pattern", {{"String", kMarker}}}, {"content", " "}});
    decoders.push_back({{"type", "ByteFallback"}});
    decoders.push_back({{"type", "Fuse"}});
    decoder = {{"type", "Sequence"}, {"decoders", decoders}};
  } else if (spm) {
    Json steps = Json::array();
    if (spec.add_space_prefix) steps.push_back({{"type", "Prepend"}, {"prepend", kMarker}});
    steps.push_back({{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kMarker}});
    normalizer = {{"type", "Sequence"}, {"normalizers", steps}};
    Json decoders = Json::array();
    decoders.push_back({{"type", "Replace"}, {"pattern", {{"String", kMarker}}}, {"content", " "}});
    decoders.push_back({{"type", "ByteFallback"}});
    decoders.push_back({{"type", "Fuse"}});
    if (spec.add_space_prefix) {
      decoders.push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
    }
    decoder = {{"type", "Sequence"}, {"decoders", decoders}};
  } else {
    // llama.cpp applies each regex in turn and keeps matches and gaps alike: Split(Isolated).
    // SmolLM's `smollm` thus splits every \p{N} digit before the GPT-2 pattern runs.
    Json steps = Json::array();
    for (const auto& r : spec.split_regexes) steps.push_back(SplitPattern(r));
    steps.push_back({{"type", "ByteLevel"},
                     {"add_prefix_space", false},
                     {"trim_offsets", true},
                     {"use_regex", false}});
    pre_tokenizer = {{"type", "Sequence"}, {"pretokenizers", steps}};
    decoder = {{"type", "ByteLevel"},
               {"add_prefix_space", true},
               {"trim_offsets", true},
               {"use_regex", true}};
  }

  Json post_processor = nullptr;
  std::vector<int32_t> prefix, suffix;
  if (spec.add_bos && spec.bos_id) prefix.push_back(*spec.bos_id);
  if (spec.add_eos && spec.eos_id) suffix.push_back(*spec.eos_id);
  if (!prefix.empty() || !suffix.empty()) {
    Json single = Json::array(), pair = Json::array(), specials = Json::object();
    auto special = [&](int32_t id, int type_id) {
      const std::string& text = spec.tokens[id];
      specials[text] = {{"id", text}, {"ids", {id}}, {"tokens", {text}}};
      return Json{{"SpecialToken", {{"id", text}, {"type_id", type_id}}}};
    };
    for (int32_t id : prefix) single.push_back(special(id, 0));
    single.push_back({{"Sequence", {{"id", "A"}, {"type_id", 0}}}});
    for (int32_t id : suffix) single.push_back(special(id, 0));
    for (int32_t id : prefix) pair.push_back(special(id, 0));
    pair.push_back({{"Sequence", {{"id", "A"}, {"type_id", 0}}}});
    for (int32_t id : suffix) pair.push_back(special(id, 0));
    for (int32_t id : prefix) pair.push_back(special(id, 1));
    pair.push_back({{"Sequence", {{"id", "B"}, {"type_id", 1}}}});
    for (int32_t id : suffix) pair.push_back(special(id, 1));
    post_processor = {{"type", "TemplateProcessing"},
                      {"single", single},
                      {"pair", pair},
                      {"special_tokens", specials}};
  }

  Json vocab = Json::object();
  std::unordered_set<std::string_view> known;
  for (size_t id = 0; id < spec.tokens.size(); ++id) {
    if (known.insert(spec.tokens[id]).second) vocab[spec.tokens[id]] = id;
  }
  Json merges = Json::array();
  auto valid = [&](const std::string& a, const std::string& b) {
    return !a.empty() && !b.empty() && known.count(a) && known.count(b) && known.count(a + b);
  };
  for (const auto& [a, b] : spm ? MergesFromScores(spec) : spec.merges) {
    if (valid(a, b)) merges.push_back({a, b});
  }
  Json model = {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", spec.unk_id ? Json(spec.tokens[*spec.unk_id]) : Json(nullptr)},
                {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr},
                {"fuse_unk", spm},
                {"byte_fallback", spm || raw},
                {"ignore_merges", spec.ignore_merges},
                {"vocab", std::move(vocab)},
                {"merges", std::move(merges)}};

  return Json{{"version", "1.0"},
              {"truncation", nullptr},
              {"padding", nullptr},
              {"added_tokens", std::move(added)},
              {"normalizer", normalizer},
              {"pre_tokenizer", pre_tokenizer},
              {"post_processor", post_processor},
              {"decoder", decoder},
              {"model", std::move(model)}};
}

Json TokenizerConfigJson(const GgufTokenizerSpec& spec) {
  auto token = [&](std::optional<int32_t> id) {
    return id ? Json(spec.tokens[*id]) : Json(nullptr);
  };
  Json decoder = Json::object();
  for (size_t id = 0; id < spec.tokens.size(); ++id) {
    if (!spec.IsAddedToken(id)) continue;
    bool rstrip = std::find(spec.rstrip_ids.begin(), spec.rstrip_ids.end(),
                            static_cast<int32_t>(id)) != spec.rstrip_ids.end();
    decoder[std::to_string(id)] = {
        {"content", spec.tokens[id]}, {"lstrip", false},      {"normalized", false},
        {"rstrip", rstrip},           {"single_word", false}, {"special", spec.IsSpecialToken(id)}};
  }
  Json config = {{"add_bos_token", spec.add_bos},
                 {"add_eos_token", spec.add_eos},
                 {"added_tokens_decoder", std::move(decoder)},
                 {"bos_token", token(spec.bos_id)},
                 {"eos_token", token(spec.eos_id)},
                 {"unk_token", token(spec.unk_id)},
                 {"pad_token", token(spec.pad_id)},
                 {"clean_up_tokenization_spaces", false},
                 {"model_max_length",
                  spec.context_length > 0 ? Json(spec.context_length) : Json(kNoMaxLength)},
                 {"tokenizer_class", "PreTrainedTokenizerFast"}};
  if (spec.chat_template) config["chat_template"] = *spec.chat_template;
  return config;
}

}  // namespace

Status ExportTokenizerFromGguf(const gguf::GgufFile& gguf, const std::string& out_dir) {
  KILN_ASSIGN_OR_RETURN(GgufTokenizerSpec spec, ReadGgufTokenizerSpec(gguf));
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) return Status::IoError(out_dir + ": cannot create directory: " + ec.message());
  std::string tokenizer, config;
  try {
    // Replace invalid UTF-8 in token texts rather than fail: the file must stay loadable.
    tokenizer = TokenizerJson(spec).dump(-1, ' ', false, Json::error_handler_t::replace);
    config = TokenizerConfigJson(spec).dump(2, ' ', false, Json::error_handler_t::replace);
  } catch (const nlohmann::json::exception& e) {
    return Status::Internal(gguf.name() + ": writing tokenizer.json: " + e.what());
  }
  KILN_RETURN_IF_ERROR(WriteStringToFile(out_dir + "/tokenizer.json", tokenizer));
  return WriteStringToFile(out_dir + "/tokenizer_config.json", config + "\n");
}

}  // namespace kiln::text
