// onnx_genai_generate FOLDER [--slots N] [--max-model-len N] [--sequential] [--arrivals N]
//                           [--threads N] [--prefix-caching]
//
// Reads one JSON object per line on stdin, {"prompt": [ids...], "max_tokens": N, "temperature":
// T, "seed": S, "logprobs": K}, runs them all through the engine on the onnx-genai executor, and
// prints one line per request, in input order: {"tokens": [...], "finish": "length"}, with
// "logprobs": [[chosen, [[id, logprob] x K]], ...] per token when K was given. Requests run one
// at a time with --sequential; otherwise N of them arrive before each engine step (default 1),
// so they join while others are mid-generation. Tests compare these ids with onnxruntime-genai's
// and batched runs with one-at-a-time ones.
#include <algorithm>
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
  size_t arrivals = 1;
  bool prefix_caching = false;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--slots" && i + 1 < argc) options.max_num_seqs = std::stoi(argv[++i]);
    if (a == "--max-model-len" && i + 1 < argc) options.max_model_len = std::stoll(argv[++i]);
    if (a == "--sequential") sequential = true;
    if (a == "--prefix-caching") prefix_caching = true;
    if (a == "--arrivals" && i + 1 < argc) arrivals = std::max(1, std::stoi(argv[++i]));
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
  config.enable_prefix_caching = prefix_caching;
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
    if (requests[i].contains("logprobs")) p.logprobs = requests[i]["logprobs"].get<int>();
    results[i] = {{"tokens", nlohmann::json::array()}};
    if (p.logprobs) results[i]["logprobs"] = nlohmann::json::array();
    auto id = engine.Submit(requests[i]["prompt"].get<std::vector<int32_t>>(), p,
                            [&results, i](const kiln::engine::TokenEvent& e) {
                              if (e.token >= 0) results[i]["tokens"].push_back(e.token);
                              if (e.token >= 0 && results[i].contains("logprobs")) {
                                nlohmann::json top = nlohmann::json::array();
                                for (const auto& t : e.top_logprobs) {
                                  top.push_back({t.token, t.logprob});
                                }
                                results[i]["logprobs"].push_back({e.logprob, top});
                              }
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
    // Staggered arrivals: requests join while others are mid-generation.
    for (size_t i = 0; i < requests.size(); ++i) {
      submit(i);
      if ((i + 1) % arrivals == 0) engine.Step();
    }
    while (engine.Step()) {
    }
  }
  for (const auto& r : results) std::cout << r.dump() << "\n";
  return 0;
}
