// native_step_bench: the vllm runtime's CPU forward pass, timed a step at a time without the
// engine or HTTP, so that a change to a kernel or to the model's step can be measured without
// clients competing for the cores.
//
//   native_step_bench [--model FILE.gguf|FOLDER] [--batches 1,32] [--context 150] [--steps 32]
//                     [--threads 2] [--kv bf16] [--repeats 3] [--prefill 512] [--pool-mib 4096]
//
// For each batch size and each context (both lists): `batch` sequences are prefilled to `context`
// tokens, then decode steps of one token per sequence are timed. The KV cache holds `pool-mib` MiB
// (at least what the batch needs), as a server's planner sizes it, and sequences own blocks drawn
// at random from all of it, as a server's free list hands them out after a while. Each figure is
// the best of `repeats` runs of `steps` steps. First, unless --prefill is 0, the time of one
// prompt of that many tokens in one step. Last, for each batch size, the step's matrix
// multiplies alone ("multiplies alone: batch B: ..."): the same weights and kernels with nothing
// else, the bound the multiply kernels set. The path is BestIsa(), or KILN_CPU_FEATURES.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kiln/engine/step_layout.h"
#include "kiln/executors/native/cpu/features.h"
#include "kiln/executors/native/cpu/kernels.h"
#include "kiln/executors/native/cpu/thread_pool.h"
#include "kiln/executors/native/kv_cache.h"
#include "kiln/executors/native/llama_model.h"

namespace {

using kiln::engine::StepLayout;
using Clock = std::chrono::steady_clock;

constexpr int kBlockSize = 16;

// The sequences of one run: sequence i owns blocks order[i * per_seq, (i + 1) * per_seq).
struct Batch {
  int blocks_per_seq = 0;
  std::vector<int32_t> order;
  std::vector<int> length;  // tokens in the cache

  // A step: `count` new tokens for each sequence in [first, first + n).
  StepLayout Step(int first, int n, int count, int32_t vocab) const {
    StepLayout l;
    l.num_groups = 1;
    l.max_blocks_per_seq = blocks_per_seq;
    l.query_start.push_back(0);
    for (int s = first; s < first + n; ++s) {
      const int32_t* blocks = &order[static_cast<size_t>(s) * blocks_per_seq];
      for (int i = 0; i < count; ++i) {
        const int p = length[s] + i;
        if (i == count - 1) l.logit_rows.push_back(static_cast<int32_t>(l.token_ids.size()));
        l.token_ids.push_back(static_cast<int32_t>((s * 7919 + p * 104729) % vocab));
        l.positions.push_back(p);
        l.slot_mapping.push_back(static_cast<int64_t>(blocks[p / kBlockSize]) * kBlockSize +
                                 p % kBlockSize);
        l.token_chunk.push_back(s - first);
      }
      l.query_start.push_back(static_cast<int32_t>(l.token_ids.size()));
      l.seq_lens.push_back(length[s] + count);
      for (int b = 0; b < blocks_per_seq; ++b) l.block_tables.push_back(blocks[b]);
    }
    return l;
  }
};

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

std::vector<int> ParseList(const std::string& text) {
  std::vector<int> out;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(std::stoi(item));
  return out;
}

int Run(int argc, char** argv) {
  const char* home = std::getenv("HOME");
  std::string model_path =
      std::string(home ? home : ".") + "/.kiln/models/smollm2-135m-instruct.gguf";
  std::string kv_name = "bf16";
  std::vector<int> batches = {1, 32};
  std::vector<int> contexts = {150};
  int steps = 32, threads = 2, repeats = 3, prefill = 512, pool_mib = 4096;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : "";
    if (a == "--model") {
      model_path = v, ++i;
    } else if (a == "--batches") {
      batches = ParseList(v), ++i;
    } else if (a == "--context") {
      contexts = ParseList(v), ++i;
    } else if (a == "--steps") {
      steps = std::atoi(v), ++i;
    } else if (a == "--threads") {
      threads = std::atoi(v), ++i;
    } else if (a == "--kv") {
      kv_name = v, ++i;
    } else if (a == "--repeats") {
      repeats = std::atoi(v), ++i;
    } else if (a == "--pool-mib") {
      pool_mib = std::atoi(v), ++i;
    } else if (a == "--prefill") {
      prefill = std::atoi(v), ++i;
    } else {
      std::fprintf(stderr, "unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  auto isa = kiln::native::cpu::SelectIsa();
  auto kv = kiln::native::ParseKvDtype(kv_name);
  if (!isa.ok() || !kv.ok()) {
    std::fprintf(stderr, "%s\n", (!isa.ok() ? isa.status() : kv.status()).message().c_str());
    return 2;
  }
  auto loaded = kiln::native::LlamaModel::Load(model_path);
  if (!loaded.ok()) {
    std::fprintf(stderr, "%s\n", loaded.status().message().c_str());
    return 1;
  }
  kiln::native::LlamaModel& model = **loaded;
  const auto vocab = static_cast<int32_t>(model.config().vocab_size);
  kiln::native::cpu::ThreadPool pool(threads);
  const int most = std::max(*std::max_element(batches.begin(), batches.end()), 1);
  const int longest = std::max(*std::max_element(contexts.begin(), contexts.end()), 1);
  Batch batch;
  batch.blocks_per_seq = (std::max(longest + steps + 4, prefill) + kBlockSize - 1) / kBlockSize;
  const int64_t needed = int64_t{most} * batch.blocks_per_seq;
  const int64_t pool_blocks = std::max<int64_t>(
      needed, (int64_t{pool_mib} << 20) / (model.kv_bytes_per_token(*kv) * kBlockSize));
  std::vector<int32_t> all(static_cast<size_t>(pool_blocks));
  std::iota(all.begin(), all.end(), 0);
  std::shuffle(all.begin(), all.end(), std::mt19937(7));
  batch.order.assign(all.begin(), all.begin() + needed);
  model.AllocateKvCache(*kv, pool_blocks, kBlockSize, int64_t{batch.blocks_per_seq} * kBlockSize);
  kiln::Status st;
  std::printf("cpu: %s, path %s, %d threads, kv %s in %lld blocks; %s (%s)\n",
              kiln::native::cpu::DetectCpuFeatures().model_name.c_str(),
              kiln::native::cpu::IsaName(*isa), threads, kiln::native::KvDtypeName(*kv),
              static_cast<long long>(pool_blocks), model_path.c_str(),
              model.weight_summary().c_str());
  std::vector<float> logits;
  if (prefill > 0) {
    double best = 1e30;
    for (int r = 0; r < repeats && st.ok(); ++r) {
      batch.length.assign(most, 0);
      logits.clear();
      const StepLayout l = batch.Step(0, 1, prefill, vocab);
      const auto t0 = Clock::now();
      st = model.Forward(l, pool, *isa, &logits);
      best = std::min(best, Seconds(t0));
    }
    if (st.ok()) std::printf("prefill %d tokens: %.1f ms\n", prefill, best * 1e3);
  }
  std::printf("%6s %8s %10s %10s\n", "batch", "context", "ms/step", "tok/s");
  for (int b : batches) {
    for (int context : contexts) {
      if (!st.ok()) break;
      // Prompts in steps of at most 2048 tokens.
      batch.length.assign(most, 0);
      const int per_step = std::max(1, 2048 / context);
      for (int s = 0; s < b && st.ok(); s += per_step) {
        const int n = std::min(per_step, b - s);
        logits.clear();
        st = model.Forward(batch.Step(s, n, context, vocab), pool, *isa, &logits);
        for (int i = s; i < s + n; ++i) batch.length[i] = context;
      }
      double best = 1e30;
      for (int r = 0; r < repeats && st.ok(); ++r) {
        std::fill(batch.length.begin(), batch.length.begin() + b, context);  // same steps again
        double seconds = 0;
        for (int step = 0; step < 4 + steps && st.ok(); ++step) {
          const StepLayout l = batch.Step(0, b, 1, vocab);
          logits.clear();
          const auto t0 = Clock::now();
          st = model.Forward(l, pool, *isa, &logits);
          if (step >= 4) seconds += Seconds(t0);
          for (int i = 0; i < b; ++i) ++batch.length[i];
        }
        best = std::min(best, seconds);
      }
      if (!st.ok()) break;
      std::printf("%6d %8d %10.3f %10.1f\n", b, context, 1e3 * best / steps,
                  static_cast<double>(b) * steps / best);
    }
  }
  if (!st.ok()) {
    std::fprintf(stderr, "%s\n", st.message().c_str());
    return 1;
  }
  // The multiplies alone: a decode step's matrix multiplies (LlamaModel::StepMatrices, through
  // the same cpu::MatMulMany as Forward) on `b` rows of random activations, and nothing else.
  const auto matrices = model.StepMatrices();
  int64_t widest_in = 0, widest_out = 0;
  for (const auto& group : matrices) {
    widest_in = std::max(widest_in, group[0]->cols);
    for (const auto* w : group) widest_out = std::max(widest_out, w->rows);
  }
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  kiln::native::cpu::MatMulScratch scratch;
  for (int b : batches) {
    std::vector<float> x(static_cast<size_t>(b * widest_in));
    for (float& v : x) v = normal(rng);
    std::vector<std::vector<float>> ys(3, std::vector<float>(static_cast<size_t>(b * widest_out)));
    double best = 1e30;
    for (int r = 0; r < repeats; ++r) {
      double seconds = 0;
      for (int step = 0; step < 4 + steps; ++step) {
        const auto t0 = Clock::now();
        for (const auto& group : matrices) {
          std::vector<kiln::native::cpu::MatMulOutput> outs;
          for (size_t i = 0; i < group.size(); ++i) {
            outs.push_back({group[i], ys[i].data(), group[i]->rows});
          }
          kiln::native::cpu::MatMulMany(pool, *isa, outs, x.data(), b, group[0]->cols, &scratch);
        }
        if (step >= 4) seconds += Seconds(t0);
      }
      best = std::min(best, seconds);
    }
    std::printf("multiplies alone: batch %d: %.3f ms/step, %.1f tok/s\n", b, 1e3 * best / steps,
                static_cast<double>(b) * steps / best);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
