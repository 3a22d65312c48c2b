#include "kiln/text/gguf_tokenizer.h"

#include <array>
#include <cctype>

namespace kiln::text {
namespace {

// The split regexes of llama.cpp's llm_tokenizer_bpe (src/llama-vocab.cpp), by family.
const char* const kGpt2 =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))";
const char* const kLlama3 = R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|)"
                            R"([^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|)"
                            R"(\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kQwen2 = R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|)"
                           R"([^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|)"
                           R"(\s+(?!\S)|\s+)";
const char* const kQwen35 =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|)"
    R"([^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|)"
    R"(\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kTekken =
    R"([^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|)"
    R"([^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}|)"
    R"( ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kGpt4o =
    R"([^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|)"
    R"('[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|)"
    R"([^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|)"
    R"('[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}|)"
    R"( ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kDeepseekLlmLetters =
    "\\s?[A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-"
    "\u02af\u0370-\u0373\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1"
    "\u03a3-\u03f5\u03f7-\u0481\u048a-\u052f\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5\u13f8-"
    "\u13fd\u1c90-\u1cba\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77\u1d79-\u1d9a\u1e00-\u1f15"
    "\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d\u1f50-\u1f57\u1f59\u1f5b\u1f5d\u1f5f-\u1f7d"
    "\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4\u1fc6-\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb"
    "\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc\u2102\u2107\u210a-\u2113\u2115\u2119-\u211d"
    "\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139\u213c-\u213f\u2145-\u2149\u214e\u2183"
    "\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee\u2cf2\u2cf3\ua640-\ua66d\ua680-\ua69b"
    "\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf\ufb00-\ufb06\ufb13-\ufb17\uff21-"
    "\uff3a\uff41-\uff5a\U00010400-\U0001044f\U000104b0-\U000104d3\U000104d8-\U000104fb"
    "\U00010c80-\U00010cb2\U00010cc0-\U00010cf2\U000118a0-\U000118df\U0001e900-\U0001e943]+";

struct PreFamily {
  std::vector<std::string_view> names;
  std::vector<const char*> regexes;
  bool ignore_merges;
};

const std::vector<PreFamily>& Families() {
  static const std::vector<PreFamily> families = {
      {{"default", ""}, {R"([\p{P}\$\+<=>\^~\|]+)", kGpt2, R"(\p{N}+)", "[0-9][0-9][0-9]"}, false},
      {{"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2",
        "jina-v5-nano"},
       {kLlama3},
       true},
      {{"dbrx", "smaug-bpe"}, {kLlama3}, false},
      {{"chatglm-bpe"}, {kLlama3}, false},
      {{"glm4", "glm5"}, {kLlama3}, true},
      {{"deepseek-llm"},
       {R"([\r\n])", kDeepseekLlmLetters,
        "\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+", R"(\s+$)",
        "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+", R"(\p{N}+)"},
       false},
      {{"deepseek-coder"},
       {R"([\r\n])", R"(\s?\p{L}+)", R"(\s?\p{P}+)", "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+",
        R"(\p{N})"},
       false},
      {{"deepseek-v3", "hunyuan-dense", "joyai-llm", "hy_v4"},
       {R"(\p{N}{1,3})", "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
        R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|)"
        R"([^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|)"
        R"(\s*[\r\n]+|\s+(?!\S)|\s+)"},
       false},
      {{"falcon"}, {R"([\p{P}\$\+<=>\^~\|`]+)", kGpt2, "[0-9][0-9][0-9]"}, false},
      {{"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b",
        "mellum2"},
       {R"(\p{N})", kGpt2},
       false},
      {{"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0",
        "mellum", "modern-bert", "jina-v1-en", "jina-v2-code", "roberta-bpe", "mpt", "olmo", "jais",
        "trillion", "granite-docling", "exaone4"},
       {kGpt2},
       false},
      {{"qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "stablelm2", "hunyuan", "megrez",
        "solar-open"},
       {kQwen2},
       false},
      {{"qwen35"}, {kQwen35}, false},
      {{"poro-chat", "bloom", "gpt3-finnish"}, {R"( ?[^(\s|.,!?…。，、।۔،)]+)"}, false},
      {{"viking"}, {R"( ?[^(\s|.,!?…。，、।۔،)]+)", R"(\p{N})"}, false},
      {{"tekken"}, {kTekken}, true},
      {{"gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"}, {kGpt4o}, false},
      {{"seed-coder"},
       {R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|)"
        R"([^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|)"
        R"(\s+(?!\S)|\s+)"},
       false},
      {{"bailingmoe", "bailingmoe2", "llada-moe"},
       {R"('(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|)"
        R"(\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+)"},
       false},
      {{"grok-2"}, {kQwen2}, false},
      {{"ufakzeka"},
       {R"([^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"},
       false},
      {{"minicpm5"},
       {R"(\p{N}{1,3})", R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|)"
                         R"([^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|)"
                         R"(\s+(?!\S)|\s+)"},
       true},
  };
  return families;
}

std::optional<int32_t> TokenId(const gguf::GgufFile& gguf, const char* key, size_t n_tokens) {
  auto v = gguf.GetUint(key);
  if (!v) {
    auto i = gguf.GetInt(key);
    if (!i || *i < 0) return std::nullopt;
    v = static_cast<uint64_t>(*i);
  }
  if (*v >= n_tokens) return std::nullopt;
  return static_cast<int32_t>(*v);
}

}  // namespace

Status LlamaCppPreTokenizer(std::string_view pre, std::vector<std::string>* regexes,
                            bool* ignore_merges) {
  for (const PreFamily& family : Families()) {
    for (std::string_view name : family.names) {
      if (name != pre) continue;
      regexes->assign(family.regexes.begin(), family.regexes.end());
      *ignore_merges = family.ignore_merges;
      return Status::Ok();
    }
  }
  return Status::Unsupported("pre-tokenizer '" + std::string(pre) + "' is not supported");
}

Result<GgufTokenizerSpec> ReadGgufTokenizerSpec(const gguf::GgufFile& gguf) {
  const std::string& file = gguf.name();
  GgufTokenizerSpec spec;
  auto model = gguf.GetString("tokenizer.ggml.model");
  if (!model) return Status::NotFound(file + ": no tokenizer.ggml.model");
  auto tokens = gguf.GetStringArray("tokenizer.ggml.tokens");
  if (!tokens || tokens->empty()) {
    return Status::InvalidArgument(file + ": tokenizer.ggml.tokens missing or not strings");
  }
  spec.tokens = std::move(*tokens);
  const size_t n = spec.tokens.size();
  for (size_t i = 0; i < n; ++i) {
    // llama.cpp renames empty tokens so every id has a distinct text.
    if (spec.tokens[i].empty()) spec.tokens[i] = "[EMPTY_" + std::to_string(i) + "]";
  }
  if (auto types = gguf.GetIntArray("tokenizer.ggml.token_type")) {
    if (types->size() < n) {
      return Status::InvalidArgument(file + ": tokenizer.ggml.token_type has " +
                                     std::to_string(types->size()) + " entries for " +
                                     std::to_string(n) + " tokens");
    }
    spec.types.reserve(n);
    for (size_t i = 0; i < n; ++i) spec.types.push_back(static_cast<GgufTokenType>((*types)[i]));
  } else {
    spec.types.assign(n, GgufTokenType::kNormal);
  }
  if (auto scores = gguf.GetFloatArray("tokenizer.ggml.scores")) {
    spec.scores = std::move(*scores);
    spec.scores.resize(n, 0.0f);
  }
  spec.pre = gguf.GetString("tokenizer.ggml.pre").value_or("");

  if (*model == "gpt2" || *model == "gemma4") {
    spec.kind = GgufTokenizerSpec::Kind::kBytePairGpt2;
    auto merges = gguf.GetStringArray("tokenizer.ggml.merges");
    if (!merges) return Status::InvalidArgument(file + ": tokenizer.ggml.merges missing");
    spec.merges.reserve(merges->size());
    for (const std::string& m : *merges) {
      size_t space = m.find(' ', 1);  // llama.cpp: a merge's left part may start with ' '
      if (space == std::string::npos) {
        spec.merges.emplace_back("", "");
      } else {
        spec.merges.emplace_back(m.substr(0, space), m.substr(space + 1));
      }
    }
    if (*model == "gemma4") {
      // llama.cpp: whole lines (and runs of newlines) are the words; no byte-level alphabet.
      spec.kind = GgufTokenizerSpec::Kind::kBytePairRaw;
      spec.pre = "gemma4";
      spec.split_regexes = {"[^\\n]+|[\\n]+"};
      spec.whole_newline_runs = true;
    } else {
      KILN_RETURN_IF_ERROR(LlamaCppPreTokenizer(spec.pre, &spec.split_regexes, &spec.ignore_merges)
                               .WithContext(file));
    }
    spec.add_bos = spec.ignore_merges &&
                   (spec.pre == "llama3" || spec.pre == "llama-v3" || spec.pre == "llama-bpe" ||
                    spec.pre == "tekken" || spec.pre == "falcon3" || spec.pre == "falcon-h1" ||
                    spec.pre == "pixtral" || spec.pre == "midm-2.0" || spec.pre == "lfm2" ||
                    spec.pre == "jina-v5-nano");
    if (spec.kind == GgufTokenizerSpec::Kind::kBytePairGpt2) {
      spec.bos_id = 11 < n ? std::optional<int32_t>(11) : std::nullopt;
      spec.eos_id = spec.bos_id;
    }
  } else if (*model == "llama") {
    spec.kind = GgufTokenizerSpec::Kind::kSentencePiece;
    spec.add_space_prefix = true;
    spec.add_bos = true;
    spec.bos_id = 1 < n ? std::optional<int32_t>(1) : std::nullopt;
    spec.eos_id = 2 < n ? std::optional<int32_t>(2) : std::nullopt;
    spec.unk_id = 0;
    if (spec.scores.empty()) spec.scores.assign(n, 0.0f);
  } else {
    return Status::Unsupported(file + ": tokenizer model '" + *model + "' is not supported");
  }

  if (auto v = gguf.GetBool("tokenizer.ggml.add_space_prefix")) spec.add_space_prefix = *v;
  if (auto v = gguf.GetBool("tokenizer.ggml.add_bos_token")) spec.add_bos = *v;
  if (auto v = gguf.GetBool("tokenizer.ggml.add_eos_token")) spec.add_eos = *v;
  // llama.cpp always adds bos for Gemma 4, whatever the file says.
  if (spec.kind == GgufTokenizerSpec::Kind::kBytePairRaw) spec.add_bos = true;
  if (gguf.Find("tokenizer.ggml.bos_token_id")) {
    spec.bos_id = TokenId(gguf, "tokenizer.ggml.bos_token_id", n);
  }
  if (gguf.Find("tokenizer.ggml.eos_token_id")) {
    spec.eos_id = TokenId(gguf, "tokenizer.ggml.eos_token_id", n);
  }
  if (gguf.Find("tokenizer.ggml.unknown_token_id")) {
    spec.unk_id = TokenId(gguf, "tokenizer.ggml.unknown_token_id", n);
  }
  spec.pad_id = TokenId(gguf, "tokenizer.ggml.padding_token_id", n);
  spec.chat_template = gguf.GetString("tokenizer.chat_template");
  if (auto arch = gguf.GetString("general.architecture")) {
    spec.context_length = gguf.GetUint(*arch + ".context_length").value_or(0);
  }

  // llama.cpp gives Phi-3's added tokens rstrip, except <unk>, <s> and <|endoftext|>.
  std::string model_name = gguf.GetString("general.name").value_or("");
  for (char& c : model_name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (model_name.find("phi-3") != std::string::npos ||
      model_name.find("phi3") != std::string::npos) {
    for (size_t i = 0; i < n; ++i) {
      if (!spec.IsAddedToken(i) && spec.tokens[i] != "</s>") continue;
      const std::string& t = spec.tokens[i];
      if (t == "<unk>" || t == "<s>" || t == "<|endoftext|>") continue;
      spec.rstrip_ids.push_back(static_cast<int32_t>(i));
    }
  }
  return spec;
}

}  // namespace kiln::text
