// Batch invariance of the vllm runtime, end to end through the engine: random greedy requests
// arrive at random steps of one engine (continuous batching, chunked prefill, prefix caching),
// and each must produce exactly the tokens and logprobs (bit for bit) it produces alone. Under
// load some requests also score their prompts (prompt_logprobs), so their steps compute every
// prompt position through the last layer, where other steps compute only the rows they sample.
//
//   native_batch <model> <requests> <seed> <max_num_batched_tokens> [kv tokens] [max prompt]
//
// Prints one line per request that differs and a summary; exits 1 if any differs. With a small
// `kv tokens` (KV cache size in tokens) sequences are preempted and recomputed under load.
#include <algorithm>
#include <cstring>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kiln/engine/engine.h"
#include "kiln/executors/native/native_executor.h"

namespace {

using namespace kiln;

struct Job {
  std::vector<int32_t> prompt;
  int64_t max_tokens = 1;
  int64_t arrival = 0;        // step at which it is submitted
  bool score_prompt = false;  // under load: prompt_logprobs too
};

struct Output {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  bool done = false;
  std::string error;
};

std::unique_ptr<engine::Engine> MakeEngine(const std::string& model, int64_t max_model_len,
                                           int64_t budget, int64_t kv_tokens, bool prefix_caching) {
  native::NativeExecutorOptions options;
  options.max_model_len = max_model_len;
  auto executor = native::NativeExecutor::Load(model, options);
  if (!executor.ok()) {
    std::cerr << executor.status().message() << "\n";
    std::exit(2);
  }
  // KILN_KV_CACHE_DTYPE: the cache's element type (native/kv_cache.h names), f32 by default.
  const char* dtype_name = std::getenv("KILN_KV_CACHE_DTYPE");
  auto dtype = native::ParseKvDtype(dtype_name ? dtype_name : "f32");
  Status allocated = dtype.ok() ? (*executor)->AllocateKvCache(
                                      *dtype, kv_tokens * (*executor)->kv_bytes_per_token(*dtype))
                                : dtype.status();
  if (!allocated.ok()) {
    std::cerr << allocated.message() << "\n";
    std::exit(2);
  }
  engine::EngineConfig config;
  config.max_model_len = max_model_len;
  config.enable_prefix_caching = prefix_caching;
  config.scheduler.max_num_batched_tokens = budget;
  config.scheduler.max_num_seqs = 16;
  return std::make_unique<engine::Engine>(config, std::move(executor).value());
}

engine::SamplingParams Params(const Job& job, bool together) {
  engine::SamplingParams p;
  p.temperature = 0.0f;
  p.max_tokens = job.max_tokens;
  p.ignore_eos = true;
  p.logprobs = 0;
  if (together && job.score_prompt) p.prompt_logprobs = 0;
  return p;
}

void Submit(engine::Engine& e, const Job& job, bool together, Output* out) {
  auto id = e.Submit(job.prompt, Params(job, together), [out](const engine::TokenEvent& ev) {
    if (ev.token >= 0) {
      out->tokens.push_back(ev.token);
      out->logprobs.push_back(ev.logprob);
    }
    if (ev.finish != engine::FinishReason::kNone) {
      out->done = true;
      out->error = ev.error;
    }
  });
  if (!id.ok()) {
    std::cerr << "submit: " << id.status().message() << "\n";
    std::exit(2);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::cerr << "usage: native_batch <model> <requests> <seed> <max_num_batched_tokens> "
                 "[kv tokens] [max prompt]\n";
    return 2;
  }
  const std::string model = argv[1];
  const int count = std::stoi(argv[2]);
  std::mt19937_64 rng(std::stoull(argv[3]));
  const int64_t budget = std::stoll(argv[4]);
  const int64_t kv_tokens = argc > 5 ? std::stoll(argv[5]) : 0;
  const int64_t max_prompt = argc > 6 ? std::stoll(argv[6]) : 300;
  const int64_t max_new = 16;
  const int64_t max_len = max_prompt + max_new;

  // Prompts share prefixes now and then (so the prefix cache serves some), with lengths from 1
  // to max prompt tokens and 1 to 16 tokens to generate, arriving over the first steps.
  std::vector<int32_t> shared;
  for (int i = 0; i < 200; ++i) shared.push_back(static_cast<int32_t>(100 + rng() % 20000));
  std::vector<Job> jobs(count);
  for (Job& job : jobs) {
    int64_t length = 1 + static_cast<int64_t>(rng() % max_prompt);
    int64_t from_shared = rng() % 3 == 0 ? static_cast<int64_t>(rng() % 200) : 0;
    job.prompt.assign(shared.begin(), shared.begin() + std::min(from_shared, length));
    while (static_cast<int64_t>(job.prompt.size()) < length) {
      job.prompt.push_back(static_cast<int32_t>(100 + rng() % 20000));
    }
    job.max_tokens = 1 + static_cast<int64_t>(rng() % max_new);
    job.arrival = static_cast<int64_t>(rng() % count);
    job.score_prompt = rng() % 4 == 0;
  }

  // Together.
  std::vector<Output> together(count);
  {
    auto e = MakeEngine(model, max_len, budget, kv_tokens, true);
    size_t submitted = 0;
    std::vector<size_t> order(count);
    for (int i = 0; i < count; ++i) order[i] = static_cast<size_t>(i);
    std::sort(order.begin(), order.end(),
              [&](size_t a, size_t b) { return jobs[a].arrival < jobs[b].arrival; });
    for (int64_t step = 0;; ++step) {
      while (submitted < order.size() && jobs[order[submitted]].arrival <= step) {
        Submit(*e, jobs[order[submitted]], true, &together[order[submitted]]);
        ++submitted;
      }
      bool worked = e->Step();
      if (!worked && submitted == order.size()) break;
    }
    std::cout << "together: preemptions " << e->stats().preemptions_total
              << ", prefix cache hit tokens " << e->stats().prefix_cache_hits_total << "\n";
  }
  // Alone, each in an empty engine.
  int differ = 0;
  auto alone_engine = MakeEngine(model, max_len, budget, 0, false);
  for (int i = 0; i < count; ++i) {
    Output alone;
    Submit(*alone_engine, jobs[i], false, &alone);
    while (alone_engine->Step()) {
    }
    const Output& t = together[i];
    bool same = t.done && alone.done && t.error.empty() && alone.error.empty() &&
                t.tokens == alone.tokens && t.logprobs.size() == alone.logprobs.size() &&
                std::memcmp(t.logprobs.data(), alone.logprobs.data(),
                            t.logprobs.size() * sizeof(float)) == 0;
    if (!same) {
      ++differ;
      std::cout << "request " << i << " (prompt " << jobs[i].prompt.size() << " tokens, "
                << jobs[i].max_tokens << " new) differs: together " << t.tokens.size() << " tokens"
                << (t.error.empty() ? "" : " error " + t.error) << ", alone " << alone.tokens.size()
                << "\n";
    }
  }
  std::cout << count - differ << " of " << count << " requests identical to their solo run\n";
  return differ == 0 ? 0 : 1;
}
