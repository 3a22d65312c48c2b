// Tokenizer::FromGguf: builds the tokenizer llama.cpp runs for a GGUF file's metadata.
#include <algorithm>

#include "kiln/text/gguf_tokenizer.h"
#include "kiln/text/tokenizer.h"

namespace kiln::text {

Result<Tokenizer> Tokenizer::FromGguf(const gguf::GgufFile& gguf) {
  KILN_ASSIGN_OR_RETURN(GgufTokenizerSpec spec, ReadGgufTokenizerSpec(gguf));
  const bool spm = spec.kind == GgufTokenizerSpec::Kind::kSentencePiece;
  const bool raw = spec.kind == GgufTokenizerSpec::Kind::kBytePairRaw;
  TokenizerParts parts;

  BpeModel::Options options;
  options.unk_id = spec.unk_id;
  if (spm) {
    options.use_scores = true;
    options.byte_fallback = true;
    if (spec.add_space_prefix) parts.normalizer.AddPrepend("\xE2\x96\x81");
    KILN_ASSIGN_OR_RETURN(Regex space, Regex::FromLiteral(" "));
    parts.normalizer.AddReplace(std::move(space), "\xE2\x96\x81");
  } else {
    options.byte_level = !raw;
    options.byte_fallback = raw;
    options.ignore_merges = spec.ignore_merges;
    options.whole_newline_runs = spec.whole_newline_runs;
    if (raw) {
      KILN_ASSIGN_OR_RETURN(Regex space, Regex::FromLiteral(" "));
      parts.normalizer.AddReplace(std::move(space), "\xE2\x96\x81");
    }
    for (const std::string& pattern : spec.split_regexes) {
      KILN_ASSIGN_OR_RETURN(Regex regex, Regex::FromOniguruma(pattern));
      parts.pre_tokenizer.AddSplit(std::move(regex), SplitBehavior::kIsolated, false);
    }
    if (!raw) KILN_RETURN_IF_ERROR(parts.pre_tokenizer.AddByteLevel(false, false));
  }
  KILN_ASSIGN_OR_RETURN(parts.model,
                        BpeModel::Create(spec.tokens, spec.merges, spec.scores, options,
                                         /*strict=*/false));

  for (size_t id = 0; id < spec.tokens.size(); ++id) {
    if (!spec.IsAddedToken(id)) continue;
    AddedToken token;
    token.id = static_cast<int32_t>(id);
    token.content = spec.tokens[id];
    token.special = spec.IsSpecialToken(id);
    token.rstrip = std::find(spec.rstrip_ids.begin(), spec.rstrip_ids.end(), token.id) !=
                   spec.rstrip_ids.end();
    parts.added.Add(std::move(token));
  }

  if (spm || raw) {
    KILN_ASSIGN_OR_RETURN(Regex marker, Regex::FromLiteral("\xE2\x96\x81"));
    parts.decoder.AddReplace(std::move(marker), " ");
    parts.decoder.AddByteFallback();
    parts.decoder.AddFuse();
    if (spec.add_space_prefix) parts.decoder.AddStrip(" ", 1, 0);
  } else {
    parts.decoder.AddByteLevel();
  }
  if (spec.add_bos && spec.bos_id) parts.prefix_ids.push_back(*spec.bos_id);
  if (spec.add_eos && spec.eos_id) parts.suffix_ids.push_back(*spec.eos_id);
  parts.bos_id = spec.bos_id;
  parts.eos_id = spec.eos_id;
  parts.unk_id = spec.unk_id;
  parts.pad_id = spec.pad_id;
  return FromParts(std::move(parts));
}

}  // namespace kiln::text
