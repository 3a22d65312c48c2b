// onnx_genai_generate FOLDER [--slots N] [--max-model-len N] [--sequential]
//
// Reads one JSON object per line on stdin, {"prompt": [ids...], "max_tokens": N, "temperature":
// T, "seed": S}, runs them all through the engine on the onnx-genai executor (concurrently,
// unless --sequential), and prints one line per request, in input order:
// {"tokens": [...], "finish": "length"}. Tests compare these ids with onnxruntime-genai's.
#include <cstdio>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kiln/engine/engine.h"
#include "kiln/executors/onnx/genai_executor.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: onnx_genai_generate FOLDER [--slots N] [--max-model-len N] "
                 "[--sequential]\n");
    return 2;
  }
  kiln::onnx::GenaiExecutorOptions options;
  bool sequential = false;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--slots" && i + 1 < argc) options.max_num_seqs = std::stoi(argv[++i]);
    if (a == "--max-model-len" && i + 1 < argc) options.max_model_len = std::stoll(argv[++i]);
    if (a == "--sequential") sequential = true;
    if (a == "--threads" && i + 1 < argc) options.intra_op_threads = std::stoi(argv[++i]);
  }
  auto executor = kiln::onnx::GenaiExecutor::Load(argv[1], options);
  if (!executor.ok()) {
    std::fprintf(stderr, "%s\n", executor.status().ToString().c_str());
    return 1;
  }
  kiln::engine::EngineConfig config;
  config.max_model_len = (*executor)->max_model_len();
  config.eos_token_ids = (*executor)->config().eos_token_ids;
  config.scheduler.max_num_seqs = options.max_num_seqs;
  config.scheduler.max_num_batched_tokens = 2048;
  kiln::engine::Engine engine(config, std::move(executor).value());

  std::vector<nlohmann::json> requests;
  std::string line;
  while (std::getline(std::cin, line)) {
    if (!line.empty()) requests.push_back(nlohmann::json::parse(line));
  }
  std::vector<nlohmann::json> results(requests.size());
  auto submit = [&](size_t i) {
    kiln::engine::SamplingParams p;
    p.temperature = requests[i].value("temperature", 0.0f);
    if (requests[i].contains("seed")) p.seed = requests[i]["seed"].get<uint64_t>();
    if (requests[i].contains("max_tokens")) p.max_tokens = requests[i]["max_tokens"].get<int64_t>();
    p.ignore_eos = requests[i].value("ignore_eos", false);
    results[i] = {{"tokens", nlohmann::json::array()}};
    auto id = engine.Submit(requests[i]["prompt"].get<std::vector<int32_t>>(), p,
                            [&results, i](const kiln::engine::TokenEvent& e) {
                              if (e.token >= 0) results[i]["tokens"].push_back(e.token);
                              if (e.finish != kiln::engine::FinishReason::kNone) {
                                results[i]["finish"] = kiln::engine::FinishReasonName(e.finish);
                                if (!e.error.empty()) results[i]["error"] = e.error;
                              }
                            });
    if (!id.ok()) results[i]["error"] = id.status().ToString();
  };
  if (sequential) {
    for (size_t i = 0; i < requests.size(); ++i) {
      submit(i);
      while (engine.Step()) {
      }
    }
  } else {
    // Staggered arrivals: a request joins while others are mid-generation.
    for (size_t i = 0; i < requests.size(); ++i) {
      submit(i);
      engine.Step();
    }
    while (engine.Step()) {
    }
  }
  for (const auto& r : results) std::cout << r.dump() << "\n";
  return 0;
}
