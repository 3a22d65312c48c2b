// Tokenizer::FromJson: reads a Hugging Face tokenizer.json into TokenizerParts.
//
// Parse errors name the file and the byte offset (from nlohmann's parse_error); structural
// errors name the file and the JSON path of the offending value.
#include <nlohmann/json.hpp>

#include "kiln/base/mapped_file.h"
#include "kiln/text/tokenizer.h"

namespace kiln::text {
namespace {

using nlohmann::json;

// Thrown inside this file only, and turned into a Status at the edge.
struct SchemaError {
  Status status;
};

[[noreturn]] void Fail(const std::string& path, const std::string& what) {
  throw SchemaError{Status::InvalidArgument(path + ": " + what)};
}

void Check(const Status& s, const std::string& path) {
  if (!s.ok()) throw SchemaError{s.WithContext(path)};
}

template <typename T>
T Take(Result<T> r, const std::string& path) {
  if (!r.ok()) throw SchemaError{r.status().WithContext(path)};
  return std::move(r).value();
}

const json* Member(const json& j, const char* key) {
  if (!j.is_object()) return nullptr;
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}

bool GetBool(const json& j, const char* key, bool fallback, const std::string& path) {
  const json* v = Member(j, key);
  if (v == nullptr) return fallback;
  if (!v->is_boolean()) Fail(path + "." + key, "expected true or false");
  return v->get<bool>();
}

std::string GetString(const json& j, const char* key, const std::string& path) {
  const json* v = Member(j, key);
  if (v == nullptr || !v->is_string()) Fail(path + "." + key, "expected a string");
  return v->get<std::string>();
}

std::optional<std::string> GetOptionalString(const json& j, const char* key,
                                             const std::string& path) {
  const json* v = Member(j, key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_string()) Fail(path + "." + key, "expected a string");
  return v->get<std::string>();
}

std::string TypeOf(const json& j, const std::string& path) {
  if (!j.is_object()) Fail(path, "expected an object");
  return GetString(j, "type", path);
}

// Sequences nest; a bound keeps hostile files from exhausting the stack.
constexpr int kMaxNesting = 32;

void CheckDepth(int depth, const std::string& path) {
  if (depth > kMaxNesting) Fail(path, "nested deeper than " + std::to_string(kMaxNesting));
}

const json& Array(const json& j, const char* key, const std::string& path) {
  const json* v = Member(j, key);
  if (v == nullptr || !v->is_array()) Fail(path + "." + key, "expected an array");
  return *v;
}

size_t GetSize(const json& j, const char* key, size_t fallback, const std::string& path) {
  const json* v = Member(j, key);
  if (v == nullptr) return fallback;
  if (!v->is_number_unsigned()) Fail(path + "." + key, "expected a non-negative integer");
  return v->get<size_t>();
}

// {"String": "..."} or {"Regex": "..."}.
Regex ParsePattern(const json& j, const std::string& path) {
  if (const json* s = Member(j, "String"); s != nullptr && s->is_string()) {
    return Take(Regex::FromLiteral(s->get<std::string>()), path + ".String");
  }
  if (const json* r = Member(j, "Regex"); r != nullptr && r->is_string()) {
    return Take(Regex::FromOniguruma(r->get<std::string>()), path + ".Regex");
  }
  Fail(path, "expected {\"String\": ...} or {\"Regex\": ...}");
}

PrependScheme ParsePrependScheme(const json& j, const std::string& path) {
  if (auto scheme = GetOptionalString(j, "prepend_scheme", path)) {
    if (*scheme == "always") return PrependScheme::kAlways;
    if (*scheme == "first") return PrependScheme::kFirst;
    if (*scheme == "never") return PrependScheme::kNever;
    Fail(path + ".prepend_scheme", "unknown scheme '" + *scheme + "'");
  }
  // Older files carry add_prefix_space instead.
  return GetBool(j, "add_prefix_space", true, path) ? PrependScheme::kAlways
                                                    : PrependScheme::kNever;
}

void ParseNormalizer(const json& j, const std::string& path, int depth, Normalizer* out,
                     bool* byte_level) {
  CheckDepth(depth, path);
  std::string type = TypeOf(j, path);
  if (type == "Sequence") {
    const json& list = Array(j, "normalizers", path);
    for (size_t i = 0; i < list.size(); ++i) {
      ParseNormalizer(list[i], path + ".normalizers[" + std::to_string(i) + "]", depth + 1, out,
                      byte_level);
    }
  } else if (type == "Replace") {
    out->AddReplace(ParsePattern(j.at("pattern"), path + ".pattern"),
                    GetString(j, "content", path));
  } else if (type == "Prepend") {
    out->AddPrepend(GetString(j, "prepend", path));
  } else if (type == "Strip") {
    out->AddStrip(GetBool(j, "strip_left", true, path), GetBool(j, "strip_right", true, path));
  } else if (type == "NFC") {
    out->AddNfc();
  } else if (type == "ByteLevel") {
    *byte_level = true;
  } else {
    throw SchemaError{Status::Unsupported(path + ": normalizer '" + type + "' is not supported")};
  }
}

void ParsePreTokenizer(const json& j, const std::string& path, int depth, PreTokenizer* out) {
  CheckDepth(depth, path);
  std::string type = TypeOf(j, path);
  if (type == "Sequence") {
    const json& list = Array(j, "pretokenizers", path);
    for (size_t i = 0; i < list.size(); ++i) {
      ParsePreTokenizer(list[i], path + ".pretokenizers[" + std::to_string(i) + "]", depth + 1,
                        out);
    }
  } else if (type == "Split") {
    const json* pattern = Member(j, "pattern");
    if (pattern == nullptr) Fail(path + ".pattern", "missing");
    SplitBehavior behavior =
        Take(ParseSplitBehavior(GetString(j, "behavior", path)), path + ".behavior");
    out->AddSplit(ParsePattern(*pattern, path + ".pattern"), behavior,
                  GetBool(j, "invert", false, path));
  } else if (type == "ByteLevel") {
    Check(out->AddByteLevel(GetBool(j, "add_prefix_space", true, path),
                            GetBool(j, "use_regex", true, path)),
          path);
  } else if (type == "Digits") {
    Check(out->AddDigits(GetBool(j, "individual_digits", false, path)), path);
  } else if (type == "Metaspace") {
    std::string replacement = GetString(j, "replacement", path);
    if (replacement.empty()) Fail(path + ".replacement", "expected one character");
    out->AddMetaspace(std::move(replacement), ParsePrependScheme(j, path),
                      GetBool(j, "split", true, path));
  } else if (type == "Whitespace") {
    Check(out->AddWhitespace(), path);
  } else if (type == "WhitespaceSplit") {
    Check(out->AddWhitespaceSplit(), path);
  } else if (type == "Punctuation") {
    std::string behavior = GetOptionalString(j, "behavior", path).value_or("Isolated");
    Check(out->AddPunctuation(Take(ParseSplitBehavior(behavior), path + ".behavior")), path);
  } else {
    throw SchemaError{
        Status::Unsupported(path + ": pre-tokenizer '" + type + "' is not supported")};
  }
}

void ParseDecoder(const json& j, const std::string& path, int depth, Decoder* out) {
  CheckDepth(depth, path);
  std::string type = TypeOf(j, path);
  if (type == "Sequence") {
    const json& list = Array(j, "decoders", path);
    for (size_t i = 0; i < list.size(); ++i) {
      ParseDecoder(list[i], path + ".decoders[" + std::to_string(i) + "]", depth + 1, out);
    }
  } else if (type == "ByteLevel") {
    out->AddByteLevel();
  } else if (type == "Metaspace") {
    out->AddMetaspace(GetString(j, "replacement", path),
                      ParsePrependScheme(j, path) != PrependScheme::kNever);
  } else if (type == "Replace") {
    out->AddReplace(ParsePattern(j.at("pattern"), path + ".pattern"),
                    GetString(j, "content", path));
  } else if (type == "ByteFallback") {
    out->AddByteFallback();
  } else if (type == "Fuse") {
    out->AddFuse();
  } else if (type == "Strip") {
    out->AddStrip(GetString(j, "content", path), GetSize(j, "start", 0, path),
                  GetSize(j, "stop", 0, path));
  } else {
    throw SchemaError{Status::Unsupported(path + ": decoder '" + type + "' is not supported")};
  }
}

int32_t ParseId(const json& j, const std::string& path) {
  if (!j.is_number_integer() || j.get<int64_t>() < 0 || j.get<int64_t>() >= (int64_t{1} << 28)) {
    Fail(path, "expected a token id (a non-negative integer below 2^28)");
  }
  return static_cast<int32_t>(j.get<int64_t>());
}

// Post-processors become ids before and after the encoded text.
void ParsePostProcessor(const json& j, const std::string& path, int depth,
                        std::vector<int32_t>* prefix, std::vector<int32_t>* suffix) {
  CheckDepth(depth, path);
  std::string type = TypeOf(j, path);
  if (type == "Sequence") {
    const json& list = Array(j, "processors", path);
    for (size_t i = 0; i < list.size(); ++i) {
      std::vector<int32_t> p, s;
      ParsePostProcessor(list[i], path + ".processors[" + std::to_string(i) + "]", depth + 1, &p,
                         &s);
      prefix->insert(prefix->begin(), p.begin(), p.end());
      suffix->insert(suffix->end(), s.begin(), s.end());
    }
  } else if (type == "ByteLevel") {
    // Offsets only; ids are unchanged.
  } else if (type == "TemplateProcessing") {
    const json& single = Array(j, "single", path);
    const json* specials = Member(j, "special_tokens");
    bool seen_sequence = false;
    for (size_t i = 0; i < single.size(); ++i) {
      std::string item_path = path + ".single[" + std::to_string(i) + "]";
      if (Member(single[i], "Sequence") != nullptr) {
        seen_sequence = true;
        continue;
      }
      const json* special = Member(single[i], "SpecialToken");
      if (special == nullptr) Fail(item_path, "expected Sequence or SpecialToken");
      std::string name = GetString(*special, "id", item_path + ".SpecialToken");
      const json* entry = specials != nullptr ? Member(*specials, name.c_str()) : nullptr;
      if (entry == nullptr) Fail(path + ".special_tokens", "no entry for '" + name + "'");
      const json& ids = Array(*entry, "ids", path + ".special_tokens." + name);
      for (const json& id : ids) {
        (seen_sequence ? suffix : prefix)->push_back(ParseId(id, path + ".special_tokens." + name));
      }
    }
  } else if (type == "RobertaProcessing" || type == "BertProcessing") {
    const json* cls = Member(j, "cls");
    const json* sep = Member(j, "sep");
    if (cls == nullptr || !cls->is_array() || cls->size() != 2) {
      Fail(path + ".cls", "expected [token, id]");
    }
    if (sep == nullptr || !sep->is_array() || sep->size() != 2) {
      Fail(path + ".sep", "expected [token, id]");
    }
    prefix->push_back(ParseId((*cls)[1], path + ".cls[1]"));
    suffix->push_back(ParseId((*sep)[1], path + ".sep[1]"));
  } else {
    throw SchemaError{
        Status::Unsupported(path + ": post-processor '" + type + "' is not supported")};
  }
}

BpeModel ParseModel(const json& j, bool byte_level) {
  const std::string path = "model";
  if (!j.is_object()) Fail(path, "expected an object");
  std::string type = GetOptionalString(j, "type", path).value_or("BPE");
  if (type != "BPE") {
    throw SchemaError{Status::Unsupported("model type '" + type + "' is not supported")};
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (auto v = GetOptionalString(j, key, path); v && !v->empty()) {
      throw SchemaError{Status::Unsupported(path + "." + key + " is not supported")};
    }
  }
  const json* vocab_json = Member(j, "vocab");
  if (vocab_json == nullptr || !vocab_json->is_object()) {
    Fail(path + ".vocab", "expected an object");
  }
  std::vector<std::string> vocab;
  // Ids are dense in real files; a bound on holes keeps a hostile id from costing gigabytes.
  const size_t max_id = vocab_json->size() + 65536;
  for (const auto& [token, id_json] : vocab_json->items()) {
    int32_t id = ParseId(id_json, path + ".vocab[\"" + token + "\"]");
    if (static_cast<size_t>(id) >= max_id) {
      Fail(path + ".vocab[\"" + token + "\"]",
           "id " + std::to_string(id) + " leaves too many ids unused");
    }
    if (token.empty()) Fail(path + ".vocab", "empty token text for id " + std::to_string(id));
    if (static_cast<size_t>(id) >= vocab.size()) vocab.resize(id + 1);
    vocab[id] = token;
  }
  std::vector<std::pair<std::string, std::string>> merges;
  if (const json* list = Member(j, "merges")) {
    if (!list->is_array()) Fail(path + ".merges", "expected an array");
    merges.reserve(list->size());
    for (size_t i = 0; i < list->size(); ++i) {
      const json& m = (*list)[i];
      std::string item = path + ".merges[" + std::to_string(i) + "]";
      if (m.is_string()) {
        const std::string& s = m.get_ref<const std::string&>();
        size_t space = s.find(' ');
        if (space == std::string::npos) Fail(item, "expected \"left right\"");
        merges.emplace_back(s.substr(0, space), s.substr(space + 1));
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
      } else {
        Fail(item, "expected \"left right\" or [left, right]");
      }
    }
  }
  BpeModel::Options options;
  options.byte_level = byte_level;
  options.byte_fallback = GetBool(j, "byte_fallback", false, path);
  options.ignore_merges = GetBool(j, "ignore_merges", false, path);
  options.fuse_unk = GetBool(j, "fuse_unk", false, path);
  if (auto unk = GetOptionalString(j, "unk_token", path)) {
    auto it = std::find(vocab.begin(), vocab.end(), *unk);
    if (it == vocab.end()) Fail(path + ".unk_token", "'" + *unk + "' is not in the vocabulary");
    options.unk_id = static_cast<int32_t>(it - vocab.begin());
  }
  return Take(BpeModel::Create(std::move(vocab), merges, {}, options, /*strict=*/true), path);
}

Tokenizer ParseTokenizer(const json& root) {
  if (!root.is_object()) Fail("(root)", "expected an object");
  TokenizerParts parts;
  bool byte_level = false;
  if (const json* n = Member(root, "normalizer")) {
    ParseNormalizer(*n, "normalizer", 0, &parts.normalizer, &byte_level);
  }
  if (const json* p = Member(root, "pre_tokenizer")) {
    ParsePreTokenizer(*p, "pre_tokenizer", 0, &parts.pre_tokenizer);
  }
  byte_level = byte_level || parts.pre_tokenizer.has_byte_level();
  const json* model = Member(root, "model");
  if (model == nullptr) Fail("model", "missing");
  parts.model = ParseModel(*model, byte_level);
  if (const json* d = Member(root, "decoder")) ParseDecoder(*d, "decoder", 0, &parts.decoder);
  if (const json* p = Member(root, "post_processor")) {
    ParsePostProcessor(*p, "post_processor", 0, &parts.prefix_ids, &parts.suffix_ids);
  }
  if (const json* added = Member(root, "added_tokens")) {
    if (!added->is_array()) Fail("added_tokens", "expected an array");
    for (size_t i = 0; i < added->size(); ++i) {
      const json& t = (*added)[i];
      std::string path = "added_tokens[" + std::to_string(i) + "]";
      if (!t.is_object()) Fail(path, "expected an object");
      AddedToken token;
      const json* id = Member(t, "id");
      if (id == nullptr) Fail(path + ".id", "missing");
      token.id = ParseId(*id, path + ".id");
      token.content = GetString(t, "content", path);
      token.single_word = GetBool(t, "single_word", false, path);
      token.lstrip = GetBool(t, "lstrip", false, path);
      token.rstrip = GetBool(t, "rstrip", false, path);
      token.normalized = GetBool(t, "normalized", true, path);
      token.special = GetBool(t, "special", false, path);
      if (token.normalized) {
        token.text = token.content;
        parts.normalizer.Apply(&token.text);
      }
      parts.added.Add(std::move(token));
    }
  }
  if (!parts.prefix_ids.empty()) parts.bos_id = parts.prefix_ids.front();
  if (!parts.suffix_ids.empty()) parts.eos_id = parts.suffix_ids.back();
  parts.unk_id = parts.model.options().unk_id;
  return Tokenizer::FromParts(std::move(parts));
}

}  // namespace

Result<Tokenizer> Tokenizer::FromJson(std::string_view text, const std::string& name) {
  try {
    json root = json::parse(text.begin(), text.end());
    return ParseTokenizer(root);
  } catch (const json::parse_error& e) {
    // nlohmann counts bytes from 1; Kiln reports 0-based offsets.
    size_t offset = e.byte > 0 ? e.byte - 1 : 0;
    return Status::InvalidArgument(name + ": byte offset " + std::to_string(offset) +
                                   ": invalid JSON: " + e.what());
  } catch (const json::exception& e) {
    return Status::InvalidArgument(name + ": " + e.what());
  } catch (const SchemaError& e) {
    return e.status.WithContext(name);
  } catch (const std::bad_alloc&) {
    return Status::OutOfRange(name + ": out of memory while loading the tokenizer");
  }
}

Result<Tokenizer> Tokenizer::FromJsonFile(const std::string& path) {
  KILN_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return FromJson(text, path);
}

}  // namespace kiln::text
