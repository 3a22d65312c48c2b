// native_cuda_bench: decode throughput of the vllm runtime's CUDA path (CudaLlama), at batch 1
// and batch 64, for the default model's shapes and for larger Llama shapes, with the fraction of
// the GPU's memory bandwidth that batch-1 decode reaches (weight bytes read per token x tokens
// per second, against a device-to-device copy measured in the same run).
//
//   native_cuda_bench [--model FILE.gguf|FOLDER] [--only NAME] [--batches 1,64]
//                     [--prompt 128] [--steps 32]
//
// Without --model the weights are synthesized on the GPU (pseudo-random, in the named formats):
// decode speed depends on the shapes and formats, not the values. A decode step is timed from
// the host's view: uploading the step's metadata, replaying the captured graph and copying the
// logits back, as the engine runs it.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "kiln/engine/step_layout.h"
#include "kiln/executors/native/cuda/cuda_llama.h"
#include "kiln/executors/native/cuda/kernels.h"
#include "kiln/executors/native/llama_model.h"

namespace {

using kiln::engine::StepLayout;
using kiln::native::CudaLlama;
using kiln::native::KvDtype;
using kiln::native::cuda::WType;
using Clock = std::chrono::steady_clock;

struct Spec {
  std::string name;
  kiln::formats::ModelConfig config;
  WType layers, embedding;
  int prompt;  // prompt tokens per sequence before decoding (0: the --prompt default)
};

kiln::formats::ModelConfig Llama(int64_t vocab, int64_t hidden, int64_t inter, int64_t layers,
                                 int64_t heads, int64_t kv_heads, bool tie) {
  kiln::formats::ModelConfig c;
  c.model_type = "llama";
  c.vocab_size = vocab;
  c.hidden_size = hidden;
  c.intermediate_size = inter;
  c.num_hidden_layers = layers;
  c.num_attention_heads = heads;
  c.num_key_value_heads = kv_heads;
  c.head_dim = hidden / heads;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 500000;
  c.tie_word_embeddings = tie;
  c.max_position_embeddings = 8192;
  return c;
}

const char* Name(WType t) {
  switch (t) {
    case WType::kF32:
      return "f32";
    case WType::kQ8_0:
      return "Q8_0";
    case WType::kQ4_0:
      return "Q4_0";
    case WType::kQ4_1:
      return "Q4_1";
    case WType::kBF16:
      return "bf16";
    case WType::kF16:
      return "f16";
  }
  return "?";
}

// Device-to-device copy bandwidth, bytes read plus written per second.
double CopyBandwidth() {
  const size_t bytes = size_t{2} << 30;
  void* a = kiln::native::cuda::Malloc(bytes);
  void* b = kiln::native::cuda::Malloc(bytes);
  void* s = kiln::native::cuda::CreateStream();
  if (!a || !b) return 0;
  kiln::native::cuda::Memset(a, 1, bytes, s);
  for (int i = 0; i < 3; ++i) kiln::native::cuda::CopyOnDevice(b, a, bytes, s);
  void* start = kiln::native::cuda::RecordEvent(s);
  const int reps = 10;
  for (int i = 0; i < reps; ++i) kiln::native::cuda::CopyOnDevice(b, a, bytes, s);
  void* end = kiln::native::cuda::RecordEvent(s);
  const double ms = kiln::native::cuda::ElapsedMs(start, end);
  kiln::native::cuda::DestroyEvent(start);
  kiln::native::cuda::DestroyEvent(end);
  kiln::native::cuda::Free(a);
  kiln::native::cuda::Free(b);
  kiln::native::cuda::DestroyStream(s);
  return 2.0 * bytes * reps / (ms / 1e3);
}

// The sequences of one run: sequence i owns blocks [i * per_seq, (i + 1) * per_seq).
struct Batch {
  int sequences = 0, blocks_per_seq = 0, block_size = 16;
  std::vector<int> length;  // tokens in the cache

  // A step: `count` new tokens for each sequence in [first, first + n).
  StepLayout Step(int first, int n, int count) const {
    StepLayout l;
    l.num_groups = 1;
    l.max_blocks_per_seq = blocks_per_seq;
    l.query_start.push_back(0);
    for (int s = first; s < first + n; ++s) {
      for (int i = 0; i < count; ++i) {
        const int p = length[s] + i;
        if (i == count - 1) l.logit_rows.push_back(static_cast<int32_t>(l.token_ids.size()));
        l.token_ids.push_back((s * 7919 + p * 104729) % 32000);
        l.positions.push_back(p);
        l.slot_mapping.push_back(static_cast<int64_t>(s) * blocks_per_seq * block_size + p);
        l.token_chunk.push_back(s - first);
      }
      l.query_start.push_back(static_cast<int32_t>(l.token_ids.size()));
      l.seq_lens.push_back(length[s] + count);
      for (int b = 0; b < blocks_per_seq; ++b) l.block_tables.push_back(s * blocks_per_seq + b);
    }
    return l;
  }
};

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

int Run(int argc, char** argv) {
  std::string model_path, only;
  std::vector<int> batches = {1, 64};
  int prompt = 128, steps = 32;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : "";
    if (a == "--model") {
      model_path = v, ++i;
    } else if (a == "--only") {
      only = v, ++i;
    } else if (a == "--prompt") {
      prompt = std::atoi(v), ++i;
    } else if (a == "--steps") {
      steps = std::atoi(v), ++i;
    } else if (a == "--batches") {
      batches.clear();
      std::stringstream ss(v);
      for (std::string item; std::getline(ss, item, ',');) batches.push_back(std::stoi(item));
      ++i;
    } else {
      std::fprintf(stderr, "unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  if (!CudaLlama::Available()) {
    std::printf("no CUDA device\n");
    return 1;
  }
  kiln::native::cuda::DeviceInfo device;
  if (!kiln::native::cuda::QueryDevice(&device)) return 1;
  const double bandwidth = CopyBandwidth();
  std::printf("device: %s, %d multiprocessors, %.1f GiB; device-to-device copy %.0f GB/s\n",
              device.name.c_str(), device.multiprocessors, device.total_bytes / 1073741824.0,
              bandwidth / 1e9);

  std::vector<Spec> specs;
  if (model_path.empty()) {
    specs = {
        {"smollm2-135m", Llama(49152, 576, 1536, 30, 9, 3, true), WType::kQ4_1, WType::kQ8_0, 0},
        {"llama3-8b", Llama(128256, 4096, 14336, 32, 32, 8, false), WType::kQ4_1, WType::kQ8_0, 0},
        {"llama3-8b", Llama(128256, 4096, 14336, 32, 32, 8, false), WType::kBF16, WType::kBF16, 0},
        {"llama3-70b", Llama(128256, 8192, 28672, 80, 64, 8, false), WType::kQ4_1, WType::kQ8_0,
         64},
    };
  } else {
    specs = {{model_path, {}, WType::kF32, WType::kF32, 0}};
  }
  std::printf("\n%-14s %-6s %9s %6s %12s %10s %12s %14s\n", "model", "weights", "GB", "batch",
              "tok/s", "ms/step", "prefill tok/s", "batch-1 HBM");
  for (const Spec& spec : specs) {
    if (!only.empty() && spec.name.find(only) == std::string::npos) continue;
    std::unique_ptr<CudaLlama> m;
    std::unique_ptr<kiln::native::LlamaModel> cpu_model;
    if (model_path.empty()) {
      auto r = CudaLlama::Synthesize(spec.config, spec.layers, spec.embedding, 42);
      if (!r.ok()) {
        std::printf("%s: %s\n", spec.name.c_str(), r.status().message().c_str());
        continue;
      }
      m = std::move(*r);
    } else {
      auto loaded = kiln::native::LlamaModel::Load(model_path);
      if (!loaded.ok()) {
        std::printf("%s\n", loaded.status().message().c_str());
        return 1;
      }
      auto r = CudaLlama::Upload(**loaded);
      if (!r.ok()) {
        std::printf("%s\n", r.status().message().c_str());
        return 1;
      }
      m = std::move(*r);
    }
    const int p = spec.prompt > 0 ? spec.prompt : prompt;
    const int most = *std::max_element(batches.begin(), batches.end());
    Batch batch;
    batch.blocks_per_seq = (std::max(p, 512) + steps + 8 + 15) / 16;
    batch.sequences = most;
    batch.length.assign(most, 0);
    kiln::Status st = m->AllocateKvCache(KvDtype::kBF16, int64_t{most} * batch.blocks_per_seq, 16,
                                         batch.blocks_per_seq * 16);
    if (!st.ok()) {
      std::printf("%s\n", st.message().c_str());
      return 1;
    }
    std::vector<float> logits;
    // Time to first token of a 512-token prompt (one chunk), after one warm-up.
    double prefill_rate = 0;
    {
      for (int rep = 0; rep < 2; ++rep) {
        batch.length[0] = 0;
        logits.clear();
        const StepLayout l = batch.Step(0, 1, 512);
        const auto t0 = Clock::now();
        st = m->Forward(l, &logits);
        if (!st.ok()) break;
        prefill_rate = 512 / Seconds(t0);
      }
      batch.length[0] = 0;
    }
    if (!st.ok()) {
      std::printf("%s: %s\n", spec.name.c_str(), st.message().c_str());
      return 1;
    }
    double batch1_rate = 0;
    for (int b : batches) {
      // Prompts in steps of at most 2048 tokens, then decode steps of the whole batch.
      std::fill(batch.length.begin(), batch.length.end(), 0);
      const int per_step = std::max(1, 2048 / p);
      for (int s = 0; s < b && st.ok(); s += per_step) {
        const int n = std::min(per_step, b - s);
        logits.clear();
        st = m->Forward(batch.Step(s, n, p), &logits);
        for (int i = s; i < s + n; ++i) batch.length[i] = p;
      }
      double seconds = 0;
      for (int step = 0; step < 4 + steps && st.ok(); ++step) {
        const StepLayout l = batch.Step(0, b, 1);
        logits.clear();
        const auto t0 = Clock::now();
        st = m->Forward(l, &logits);
        if (step >= 4) seconds += Seconds(t0);
        for (int i = 0; i < b; ++i) ++batch.length[i];
      }
      if (!st.ok()) {
        std::printf("%s batch %d: %s\n", spec.name.c_str(), b, st.message().c_str());
        break;
      }
      const double rate = static_cast<double>(b) * steps / seconds;
      if (b == 1) batch1_rate = rate;
      char hbm[64] = "";
      if (b == 1 && bandwidth > 0) {
        std::snprintf(hbm, sizeof hbm, "%.0f%%",
                      100.0 * m->weight_bytes_read_per_token() * rate / bandwidth);
      }
      std::printf("%-14s %-6s %9.2f %6d %12.1f %10.3f %12.0f %14s\n", spec.name.c_str(),
                  model_path.empty() ? Name(spec.layers) : "file", m->weight_bytes() / 1e9, b, rate,
                  1e3 * seconds / steps, prefill_rate, hbm);
    }
    if (batch1_rate > 0) {
      std::printf(
          "  batch 1 reads %.2f GB of weights per token: %.0f GB/s, %.0f%% of the copy "
          "bandwidth, %.0f%% of the 4.8 TB/s datasheet figure (H200)\n",
          m->weight_bytes_read_per_token() / 1e9,
          m->weight_bytes_read_per_token() * batch1_rate / 1e9,
          100.0 * m->weight_bytes_read_per_token() * batch1_rate / bandwidth,
          100.0 * m->weight_bytes_read_per_token() * batch1_rate / 4.8e12);
    }
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
