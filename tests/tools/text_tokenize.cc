// text_tokenize: drives Kiln's tokenizer for the Python tests and the tokenizer benchmark.
//
//   text_tokenize (--json tokenizer.json | --gguf model.gguf) [mode] [options] < input
//
// Modes (one):
//   encode (default)  each input line is a JSON string; prints its ids, space-separated
//   --decode          each input line is a JSON array of ids; prints the text as a JSON string
//   --stream          like --decode, but through the Detokenizer: prints the JSON array of the
//                     chunks Push() returned for each id, then Flush()'s chunk
//   --export DIR      (with --gguf) writes tokenizer.json and tokenizer_config.json into DIR
//   --bench N         encodes all lines N times; prints bytes, tokens and seconds as JSON
// Options: --add-special (post-processor bos/eos), --no-parse-special (special tokens in the
// text are plain text), --skip-special (decode without special tokens).
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kiln/formats/gguf.h"
#include "kiln/text/detokenizer.h"
#include "kiln/text/gguf_tokenizer_export.h"
#include "kiln/text/tokenizer.h"

namespace {

int Usage() {
  std::fprintf(stderr,
               "usage: text_tokenize (--json FILE | --gguf FILE) [--decode | --stream | "
               "--export DIR | --bench N] [--add-special] [--no-parse-special] "
               "[--skip-special]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string json_path, gguf_path, export_dir, mode = "encode";
  int bench_repeats = 0;
  kiln::text::EncodeOptions options;
  bool skip_special = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (arg == "--json") {
      json_path = next();
    } else if (arg == "--gguf") {
      gguf_path = next();
    } else if (arg == "--decode") {
      mode = "decode";
    } else if (arg == "--stream") {
      mode = "stream";
    } else if (arg == "--export") {
      mode = "export";
      export_dir = next();
    } else if (arg == "--bench") {
      mode = "bench";
      bench_repeats = std::atoi(next().c_str());
    } else if (arg == "--add-special") {
      options.add_special_tokens = true;
    } else if (arg == "--no-parse-special") {
      options.parse_special = false;
    } else if (arg == "--skip-special") {
      skip_special = true;
    } else {
      return Usage();
    }
  }
  if (json_path.empty() == gguf_path.empty()) return Usage();

  kiln::text::Tokenizer tokenizer;
  if (!gguf_path.empty()) {
    auto gguf = kiln::gguf::GgufFile::Open(gguf_path);
    if (!gguf.ok()) {
      std::fprintf(stderr, "%s\n", gguf.status().ToString().c_str());
      return 1;
    }
    if (mode == "export") {
      kiln::Status s = kiln::text::ExportTokenizerFromGguf(*gguf, export_dir);
      if (!s.ok()) {
        std::fprintf(stderr, "%s\n", s.ToString().c_str());
        return 1;
      }
      return 0;
    }
    auto loaded = kiln::text::Tokenizer::FromGguf(*gguf);
    if (!loaded.ok()) {
      std::fprintf(stderr, "%s\n", loaded.status().ToString().c_str());
      return 1;
    }
    tokenizer = std::move(loaded).value();
  } else {
    if (mode == "export") return Usage();
    auto loaded = kiln::text::Tokenizer::FromJsonFile(json_path);
    if (!loaded.ok()) {
      std::fprintf(stderr, "%s\n", loaded.status().ToString().c_str());
      return 1;
    }
    tokenizer = std::move(loaded).value();
  }

  std::ios::sync_with_stdio(false);
  std::vector<std::string> lines;
  std::string line;
  try {
    while (std::getline(std::cin, line)) {
      if (mode == "encode" || mode == "bench") {
        lines.push_back(nlohmann::json::parse(line).get<std::string>());
        continue;
      }
      std::vector<int32_t> ids = nlohmann::json::parse(line).get<std::vector<int32_t>>();
      if (mode == "decode") {
        std::cout << nlohmann::json(tokenizer.Decode(ids, skip_special))
                         .dump(-1, ' ', false, nlohmann::json::error_handler_t::strict)
                  << '\n';
      } else {
        kiln::text::Detokenizer detok(tokenizer, skip_special);
        nlohmann::json chunks = nlohmann::json::array();
        for (int32_t id : ids) chunks.push_back(detok.Push(id));
        chunks.push_back(detok.Flush());
        std::cout << chunks.dump(-1, ' ', false, nlohmann::json::error_handler_t::strict) << '\n';
      }
    }
  } catch (const nlohmann::json::exception& e) {
    std::fprintf(stderr, "input line %zu: %s\n", lines.size() + 1, e.what());
    return 1;
  }

  if (mode == "bench") {
    size_t bytes = 0, tokens = 0;
    for (const auto& l : lines) bytes += l.size();
    auto start = std::chrono::steady_clock::now();
    for (int r = 0; r < bench_repeats; ++r) {
      for (const auto& l : lines) tokens += tokenizer.Encode(l, options).size();
    }
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::cout << nlohmann::json{{"bytes", bytes * bench_repeats},
                                {"tokens", tokens},
                                {"seconds", seconds}}
                     .dump()
              << '\n';
    return 0;
  }
  if (mode == "encode") {
    std::string out;
    for (const auto& l : lines) {
      std::vector<int32_t> ids = tokenizer.Encode(l, options);
      for (size_t i = 0; i < ids.size(); ++i) {
        if (i > 0) out.push_back(' ');
        out.append(std::to_string(ids[i]));
      }
      out.push_back('\n');
    }
    std::cout << out;
  }
  return 0;
}
