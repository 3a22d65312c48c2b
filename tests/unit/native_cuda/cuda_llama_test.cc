// The CUDA kernels and CudaLlama against the CPU path: every weight type's matrix multiply
// against cpu::MatMul, the embedding lookup against the GGUF dequantizer, whole models (a random
// Llama and Qwen2 written as safetensors, f32 and bf16, as stored and int8) through chunked
// prefill, decode steps replayed as CUDA graphs, and mixed steps, against LlamaModel, and the
// engine over the GPU executor against the engine over the CPU one.
// Without a CUDA device every test skips: CI machines have none.
#include "kiln/executors/native/cuda/cuda_llama.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "kiln/engine/engine.h"
#include "kiln/engine/step_layout.h"
#include "kiln/executors/native/cpu/features.h"
#include "kiln/executors/native/cpu/kernels.h"
#include "kiln/executors/native/cuda/kernels.h"
#include "kiln/executors/native/kv_cache.h"
#include "kiln/executors/native/llama_model.h"
#include "kiln/executors/native/native_executor.h"
#include "kiln/formats/gguf.h"
#include "kiln/formats/safetensors.h"

namespace kiln::native {
namespace {

namespace fs = std::filesystem;
using cpu::WeightType;

#define SKIP_WITHOUT_GPU() \
  if (!CudaLlama::Available()) GTEST_SKIP() << "no CUDA device"

// An fp16 bit pattern of magnitude in [2^-8, 2^-5).
uint16_t RandomHalf(std::mt19937& rng, bool negative = false) {
  const uint16_t exponent = 7 + rng() % 3;
  const uint16_t bits = static_cast<uint16_t>(exponent << 10 | (rng() & 0x3FF));
  return negative ? bits | 0x8000 : bits;
}

// `rows` rows of `cols` weights of `type` in the stored layout, random.
std::vector<uint8_t> RandomRows(WeightType type, int64_t rows, int64_t cols, std::mt19937& rng) {
  std::vector<uint8_t> out(cpu::RowBytes(type, cols) * rows);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  switch (type) {
    case WeightType::kF32:
      for (size_t i = 0; i < out.size(); i += 4) {
        float v = uniform(rng);
        std::memcpy(&out[i], &v, 4);
      }
      break;
    case WeightType::kBF16:
      for (size_t i = 0; i < out.size(); i += 2) {
        uint16_t v = FloatToBf16(uniform(rng));
        std::memcpy(&out[i], &v, 2);
      }
      break;
    case WeightType::kF16:
      for (size_t i = 0; i < out.size(); i += 2) {
        uint16_t v = RandomHalf(rng, rng() % 2);
        std::memcpy(&out[i], &v, 2);
      }
      break;
    default: {
      const size_t block = cpu::RowBytes(type, 32);
      for (size_t b = 0; b < out.size(); b += block) {
        uint16_t d = RandomHalf(rng);
        std::memcpy(&out[b], &d, 2);
        size_t first = 2;
        if (type == WeightType::kQ4_1) {
          uint16_t m = RandomHalf(rng, true);
          std::memcpy(&out[b + 2], &m, 2);
          first = 4;
        }
        for (size_t i = first; i < block; ++i) {
          out[b + i] = static_cast<uint8_t>(rng());
          if (type == WeightType::kQ8_0 && out[b + i] == 0x80) out[b + i] = 0x81;
        }
      }
    }
  }
  return out;
}

// Device buffers freed at scope exit.
struct DeviceBuffer {
  void* p = nullptr;
  explicit DeviceBuffer(size_t bytes) : p(cuda::Malloc(bytes)) {}
  ~DeviceBuffer() { cuda::Free(p); }
  template <typename T>
  T* as() const {
    return static_cast<T*>(p);
  }
};

class CudaMatMulTest : public ::testing::TestWithParam<WeightType> {};

TEST_P(CudaMatMulTest, MatchesTheCpuKernels) {
  SKIP_WITHOUT_GPU();
  const WeightType type = GetParam();
  std::mt19937 rng(7);
  Result<cpu::Isa> isa = cpu::SelectIsa();
  ASSERT_TRUE(isa.ok());
  cpu::ThreadPool pool(1);
  void* stream = cuda::CreateStream();
  for (int64_t k : {256, 576, 1536}) {
    for (int64_t rows : {1, 2, 3, 8, 17, 64, 130}) {
      const int64_t n_out = 200;
      std::vector<uint8_t> w = RandomRows(type, n_out, k, rng);
      std::vector<uint8_t> packed(cpu::PackedBytes(type, n_out, k));
      cpu::PackWeights(type, n_out, k, w.data(), packed.data());
      const cpu::WeightMatrix matrix{type, n_out, k, packed.data()};
      std::vector<float> x(rows * k), bias(n_out);
      std::uniform_real_distribution<float> uniform(-2.0f, 2.0f);
      for (float& v : x) v = uniform(rng);
      for (float& v : bias) v = uniform(rng);
      std::vector<float> want(rows * n_out);
      cpu::MatMulScratch scratch;
      cpu::MatMul(pool, *isa, matrix, x.data(), rows, k, want.data(), n_out, &scratch);

      DeviceBuffer dw(w.size()), dx(x.size() * 4), dq(rows * (k / 32) * 44), dy(want.size() * 4),
          db(bias.size() * 4), workspace(int64_t{4} << 20);
      cuda::CopyToDevice(dw.p, w.data(), w.size(), stream);
      cuda::CopyToDevice(dx.p, x.data(), x.size() * 4, stream);
      cuda::CopyToDevice(db.p, bias.data(), bias.size() * 4, stream);
      cuda::Memset(dy.p, 0xFF, want.size() * 4, stream);  // NaN: every output must be written
      const auto wtype = static_cast<cuda::WType>(type);
      if (!cpu::IsFloatType(type)) cuda::QuantizeQ8(dx.as<float>(), rows, k, dq.p, stream);
      // With a workspace, so the tensor-core path splits k (the outputs are few).
      cuda::MatMul(wtype, dw.p, n_out, k, dx.as<float>(), dq.p, rows, db.as<float>(),
                   dy.as<float>(), stream, workspace.as<float>(), int64_t{1} << 20);
      std::vector<float> got(want.size());
      cuda::CopyToHost(got.data(), dy.p, got.size() * 4, stream);
      ASSERT_TRUE(cuda::Sync(stream)) << cuda::LastError();
      float scale = 0.0f, worst = 0.0f;
      for (float v : want) scale = std::max(scale, std::fabs(v));
      for (size_t i = 0; i < got.size(); ++i) {
        ASSERT_FALSE(std::isnan(got[i])) << "output " << i << " not written";
        worst = std::max(worst, std::fabs(got[i] - (want[i] + bias[i % n_out])));
      }
      // The CUDA cores take the CPU's quantized activations and integer products (float
      // summation order apart); the tensor cores round activations and weights to bf16.
      const bool tensor_cores = rows > cuda::kCudaCoreRows && type != WeightType::kF32;
      EXPECT_LE(worst, (tensor_cores ? 2e-2f : 2e-5f) * scale + 1e-5f)
          << cpu::WeightTypeName(type) << " k=" << k << " rows=" << rows;
    }
  }
  cuda::DestroyStream(stream);
}

INSTANTIATE_TEST_SUITE_P(AllTypes, CudaMatMulTest,
                         ::testing::Values(WeightType::kF32, WeightType::kBF16, WeightType::kF16,
                                           WeightType::kQ8_0, WeightType::kQ4_0, WeightType::kQ4_1),
                         [](const auto& info) { return cpu::WeightTypeName(info.param); });

TEST(CudaEmbed, DequantizesAsTheGgufReaderDoes) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(3);
  void* stream = cuda::CreateStream();
  const int64_t vocab = 50, h = 96;
  const std::pair<WeightType, gguf::TensorType> types[] = {
      {WeightType::kQ8_0, gguf::TensorType::kQ8_0},
      {WeightType::kQ4_0, gguf::TensorType::kQ4_0},
      {WeightType::kQ4_1, gguf::TensorType::kQ4_1},
      {WeightType::kF16, gguf::TensorType::kF16},
      {WeightType::kBF16, gguf::TensorType::kBF16}};
  for (const auto& [type, gguf_type] : types) {
    std::vector<uint8_t> table = RandomRows(type, vocab, h, rng);
    const std::vector<int32_t> ids = {0, 49, 7, 7, 23};
    DeviceBuffer dt(table.size()), di(ids.size() * 4), dout(ids.size() * h * 4);
    cuda::CopyToDevice(dt.p, table.data(), table.size(), stream);
    cuda::CopyToDevice(di.p, ids.data(), ids.size() * 4, stream);
    cuda::Embed(static_cast<cuda::WType>(type), dt.p, h, di.as<int32_t>(), ids.size(), 1.0f,
                dout.as<float>(), stream);
    std::vector<float> got(ids.size() * h);
    cuda::CopyToHost(got.data(), dout.p, got.size() * 4, stream);
    ASSERT_TRUE(cuda::Sync(stream)) << cuda::LastError();
    const size_t row_bytes = cpu::RowBytes(type, h);
    for (size_t t = 0; t < ids.size(); ++t) {
      std::vector<float> want(h);
      ASSERT_TRUE(
          gguf::DequantizeToF32(gguf_type, {&table[ids[t] * row_bytes], row_bytes}, h, want.data())
              .ok());
      for (int64_t i = 0; i < h; ++i) {
        ASSERT_EQ(got[t * h + i], want[i]) << cpu::WeightTypeName(type) << " row " << ids[t];
      }
    }
  }
  cuda::DestroyStream(stream);
}

// A random Llama-family model written as a Hugging Face folder.
struct TinyModel {
  std::string model_type = "llama";
  safetensors::Dtype dtype = safetensors::Dtype::kF32;
  bool tie = false;
  int64_t vocab = 512, hidden = 256, inter = 512, layers = 2, heads = 4, kv_heads = 2;

  void Write(const fs::path& dir, uint32_t seed) const {
    fs::create_directories(dir);
    std::ofstream(dir / "config.json")
        << "{\"model_type\": \"" << model_type << "\", \"vocab_size\": " << vocab
        << ", \"hidden_size\": " << hidden << ", \"intermediate_size\": " << inter
        << ", \"num_hidden_layers\": " << layers << ", \"num_attention_heads\": " << heads
        << ", \"num_key_value_heads\": " << kv_heads
        << ", \"max_position_embeddings\": 256, \"rms_norm_eps\": 1e-5, \"rope_theta\": 10000.0,"
        << " \"tie_word_embeddings\": " << (tie ? "true" : "false") << "}";
    const int64_t hd = hidden / heads, q_dim = heads * hd, kv_dim = kv_heads * hd;
    std::vector<std::pair<safetensors::TensorSpec, float>> tensors;  // spec, magnitude
    auto add = [&](const std::string& name, std::vector<int64_t> shape, float magnitude) {
      tensors.push_back({{name, dtype, std::move(shape)}, magnitude});
    };
    add("model.embed_tokens.weight", {vocab, hidden}, 1.0f);
    for (int64_t i = 0; i < layers; ++i) {
      const std::string p = "model.layers." + std::to_string(i) + ".";
      add(p + "input_layernorm.weight", {hidden}, -1.0f);
      add(p + "post_attention_layernorm.weight", {hidden}, -1.0f);
      const float in_h = 1.7f / std::sqrt(static_cast<float>(hidden));
      add(p + "self_attn.q_proj.weight", {q_dim, hidden}, in_h);
      add(p + "self_attn.k_proj.weight", {kv_dim, hidden}, in_h);
      add(p + "self_attn.v_proj.weight", {kv_dim, hidden}, in_h);
      if (model_type == "qwen2") {
        add(p + "self_attn.q_proj.bias", {q_dim}, 0.5f);
        add(p + "self_attn.k_proj.bias", {kv_dim}, 0.5f);
        add(p + "self_attn.v_proj.bias", {kv_dim}, 0.5f);
      }
      add(p + "self_attn.o_proj.weight", {hidden, q_dim}, 1.7f / std::sqrt(float(q_dim)));
      add(p + "mlp.gate_proj.weight", {inter, hidden}, in_h);
      add(p + "mlp.up_proj.weight", {inter, hidden}, in_h);
      add(p + "mlp.down_proj.weight", {hidden, inter}, 1.7f / std::sqrt(float(inter)));
    }
    add("model.norm.weight", {hidden}, -1.0f);
    if (!tie) add("lm_head.weight", {vocab, hidden}, 1.7f / std::sqrt(float(hidden)));
    std::vector<safetensors::TensorSpec> specs;
    for (const auto& [spec, m] : tensors) specs.push_back(spec);
    auto writer =
        safetensors::SafetensorsWriter::Create((dir / "model.safetensors").string(), specs);
    ASSERT_TRUE(writer.ok()) << writer.status().message();
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
    for (const safetensors::TensorSpec& spec : writer->order()) {
      float magnitude = 0.0f;
      for (const auto& [s, m] : tensors) {
        if (s.name == spec.name) magnitude = m;
      }
      int64_t n = 1;
      for (int64_t d : spec.shape) n *= d;
      std::vector<uint8_t> bytes(n * safetensors::DtypeSize(dtype));
      for (int64_t i = 0; i < n; ++i) {
        // Norm weights (magnitude < 0) near 1, the rest uniform.
        const float v = magnitude < 0 ? 1.0f + 0.2f * uniform(rng) : magnitude * uniform(rng);
        if (dtype == safetensors::Dtype::kBF16) {
          const uint16_t b = FloatToBf16(v);
          std::memcpy(&bytes[i * 2], &b, 2);
        } else {
          std::memcpy(&bytes[i * 4], &v, 4);
        }
      }
      ASSERT_TRUE(writer->Write(spec.name, bytes).ok());
    }
    ASSERT_TRUE(writer->Finish().ok());
  }
};

// One chunk of a step: `count` tokens from position `start` of a sequence whose blocks are
// `blocks`, its every row's logits or its last's.
struct Chunk {
  std::vector<int32_t> tokens;  // the sequence's whole token list
  int32_t start = 0, count = 0;
  std::vector<int32_t> blocks;
  bool all_logits = false;
};

engine::StepLayout MakeLayout(const std::vector<Chunk>& chunks, int32_t block_size) {
  engine::StepLayout l;
  l.num_groups = 1;
  for (const Chunk& c : chunks) {
    l.max_blocks_per_seq = std::max(l.max_blocks_per_seq, static_cast<int32_t>(c.blocks.size()));
  }
  l.query_start.push_back(0);
  for (size_t ci = 0; ci < chunks.size(); ++ci) {
    const Chunk& c = chunks[ci];
    for (int32_t i = 0; i < c.count; ++i) {
      const int32_t p = c.start + i;
      if (c.all_logits || i == c.count - 1) l.logit_rows.push_back(l.num_tokens());
      l.token_ids.push_back(c.tokens[p]);
      l.positions.push_back(p);
      l.slot_mapping.push_back(static_cast<int64_t>(c.blocks[p / block_size]) * block_size +
                               p % block_size);
      l.token_chunk.push_back(static_cast<int32_t>(ci));
    }
    l.query_start.push_back(static_cast<int32_t>(l.token_ids.size()));
    l.seq_lens.push_back(c.start + c.count);
    std::vector<int32_t> table = c.blocks;
    table.resize(l.max_blocks_per_seq, -1);
    l.block_tables.insert(l.block_tables.end(), table.begin(), table.end());
  }
  return l;
}

struct ModelCase {
  std::string name;
  TinyModel model;
  bool int8;
  KvDtype kv;
  float tolerance;
};

class CudaLlamaTest : public ::testing::TestWithParam<ModelCase> {};

TEST_P(CudaLlamaTest, LogitsMatchTheCpuModelThroughPrefillDecodeAndMixedSteps) {
  SKIP_WITHOUT_GPU();
  const ModelCase& mc = GetParam();
  const fs::path dir = fs::path(::testing::TempDir()) / ("kiln_cuda_" + mc.name);
  mc.model.Write(dir, 11);
  auto cpu_model = LlamaModel::Load(dir.string(), mc.int8);
  ASSERT_TRUE(cpu_model.ok()) << cpu_model.status().message();
  auto gpu_model = CudaLlama::Upload(**cpu_model);
  ASSERT_TRUE(gpu_model.ok()) << gpu_model.status().message();
  const int32_t block_size = 16, blocks = 48, max_positions = 256;
  (*cpu_model)->AllocateKvCache(mc.kv, blocks, block_size, max_positions);
  ASSERT_TRUE((*gpu_model)->AllocateKvCache(mc.kv, blocks, block_size, max_positions).ok());
  Result<cpu::Isa> isa = cpu::SelectIsa();
  ASSERT_TRUE(isa.ok());
  cpu::ThreadPool pool(2);

  std::mt19937 rng(5);
  auto sequence = [&](int n) {
    std::vector<int32_t> t(n);
    for (int32_t& id : t) id = static_cast<int32_t>(rng() % mc.model.vocab);
    return t;
  };
  const std::vector<int32_t> a = sequence(120), b = sequence(120), c = sequence(120);
  const std::vector<int32_t> a_blocks = {0, 1, 2, 3, 4, 5, 6, 7};
  const std::vector<int32_t> b_blocks = {20, 9, 30, 11, 12, 13, 14, 15};
  const std::vector<int32_t> c_blocks = {16, 17, 18, 19, 8, 21, 22, 23};
  std::vector<std::vector<Chunk>> steps = {
      // Prefill: a 40-token chunk with every row's logits beside a 5-token one.
      {{a, 0, 40, a_blocks, true}, {b, 0, 5, b_blocks, false}},
      // Decode (captured as a graph), then again (replayed), then a longer prefill chunk.
      {{a, 40, 1, a_blocks}, {b, 5, 1, b_blocks}},
      {{a, 41, 1, a_blocks}, {b, 6, 1, b_blocks}},
      {{b, 7, 90, b_blocks, true}},
      {{a, 42, 1, a_blocks}, {b, 97, 1, b_blocks}},
      // Mixed: decodes beside a new sequence's first chunk.
      {{a, 43, 1, a_blocks}, {c, 0, 33, c_blocks, true}, {b, 98, 1, b_blocks}},
      {{a, 44, 1, a_blocks}, {c, 33, 1, c_blocks}, {b, 99, 1, b_blocks}},
  };
  for (size_t s = 0; s < steps.size(); ++s) {
    const engine::StepLayout layout = MakeLayout(steps[s], block_size);
    std::vector<float> want, got;
    ASSERT_TRUE((*cpu_model)->Forward(layout, pool, *isa, &want).ok());
    Status st = (*gpu_model)->Forward(layout, &got);
    ASSERT_TRUE(st.ok()) << st.message();
    ASSERT_EQ(got.size(), want.size());
    const int64_t vocab = mc.model.vocab;
    float worst = 0.0f;
    for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::fabs(got[i] - want[i]));
    EXPECT_LE(worst, mc.tolerance) << "step " << s;
    std::printf("%s step %zu: %zu logits, largest difference %.3g\n", mc.name.c_str(), s,
                got.size(), worst);
    // The same top token wherever the CPU's top two are further apart than the tolerance.
    for (size_t r = 0; r * vocab < want.size(); ++r) {
      const float* w = &want[r * vocab];
      const float* g = &got[r * vocab];
      std::vector<float> sorted(w, w + vocab);
      std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<>());
      if (sorted[0] - sorted[1] <= 2 * mc.tolerance) continue;
      EXPECT_EQ(std::max_element(g, g + vocab) - g, std::max_element(w, w + vocab) - w)
          << "step " << s << " row " << r;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Models, CudaLlamaTest,
    ::testing::Values(ModelCase{"llama_f32", TinyModel{}, false, KvDtype::kF32, 1e-3f},
                      ModelCase{"qwen2_bf16_tied",
                                TinyModel{"qwen2", safetensors::Dtype::kBF16, true}, false,
                                KvDtype::kBF16, 0.25f},
                      // A float's last bit can flip an activation's 8-bit rounding (GPU and CPU
                      // sum in other orders), and prefill steps round activations to bf16 for
                      // the tensor cores: up to about 1% of the logits' range.
                      ModelCase{"llama_int8", TinyModel{}, true, KvDtype::kF32, 0.12f}),
    [](const auto& info) { return info.param.name; });

// The whole engine (scheduler, block manager, prefix caching, recompute preemption) over the GPU
// executor gives the CPU executor's greedy tokens: requests of several lengths sharing a prefix,
// arriving while others run, in a KV cache too small for all of them at once.
TEST(CudaEngine, GreedyTokensMatchTheCpuExecutorWithPrefixCachingAndPreemption) {
  SKIP_WITHOUT_GPU();
  const fs::path dir = fs::path(::testing::TempDir()) / "kiln_cuda_engine";
  TinyModel{}.Write(dir, 23);
  std::mt19937 rng(9);
  std::vector<int32_t> shared(40);
  for (int32_t& t : shared) t = static_cast<int32_t>(rng() % 512);
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 12; ++i) {
    std::vector<int32_t> p = i % 3 == 0 ? std::vector<int32_t>() : shared;
    const int extra = 5 + static_cast<int>(rng() % 50);
    for (int j = 0; j < extra; ++j) p.push_back(static_cast<int32_t>(rng() % 512));
    prompts.push_back(p);
  }
  struct Outcome {
    std::vector<std::vector<int32_t>> tokens;
    engine::EngineStats stats;
  };
  auto run = [&](const std::string& device) -> Outcome {
    native::NativeExecutorOptions options;
    options.max_model_len = 256;
    options.threads = 2;
    options.device = device;
    auto executor = NativeExecutor::Load(dir.string(), options);
    EXPECT_TRUE(executor.ok()) << executor.status().message();
    if (!executor.ok()) return {};
    EXPECT_EQ((*executor)->on_gpu(), device == "cuda");
    // 24 blocks of 16 tokens: one 256-token sequence and a half, not the 12 requests at once.
    const int64_t block_bytes = (*executor)->kv_bytes_per_token(KvDtype::kF32) * 16;
    EXPECT_TRUE((*executor)->AllocateKvCache(KvDtype::kF32, 24 * block_bytes).ok());
    engine::EngineConfig config;
    config.max_model_len = 256;
    config.enable_prefix_caching = true;
    config.scheduler.max_num_batched_tokens = 64;
    config.scheduler.max_num_seqs = 8;
    engine::Engine engine(config, std::move(*executor));
    Outcome out;
    out.tokens.resize(prompts.size());
    engine::SamplingParams params;
    params.temperature = 0;
    params.max_tokens = 24;
    params.ignore_eos = true;
    for (size_t i = 0; i < prompts.size(); ++i) {
      auto id = engine.Submit(prompts[i], params, [&out, i](const engine::TokenEvent& e) {
        if (e.token >= 0) out.tokens[i].push_back(e.token);
        EXPECT_TRUE(e.error.empty()) << e.error;
      });
      EXPECT_TRUE(id.ok()) << id.status().message();
      if (i % 4 == 3) engine.Step();  // later requests arrive while earlier ones run
    }
    while (engine.Step()) {
    }
    out.stats = engine.stats();
    return out;
  };
  const Outcome cpu = run("cpu");
  const Outcome gpu = run("cuda");
  ASSERT_EQ(gpu.tokens.size(), prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(gpu.tokens[i].size(), 24u) << "request " << i;
    EXPECT_EQ(gpu.tokens[i], cpu.tokens[i]) << "request " << i;
  }
  EXPECT_GT(gpu.stats.prefix_cache_hits_total, 0);
  EXPECT_GT(gpu.stats.preemptions_total, 0);
  std::printf("engine on cuda: %lld prefix-cache hits, %lld preemptions\n",
              static_cast<long long>(gpu.stats.prefix_cache_hits_total),
              static_cast<long long>(gpu.stats.preemptions_total));
}

TEST(CudaLlamaSynthesized, RunsAStepOfTheDefaultModelsShapes) {
  SKIP_WITHOUT_GPU();
  formats::ModelConfig c;
  c.model_type = "llama";
  c.vocab_size = 49152;
  c.hidden_size = 576;
  c.intermediate_size = 1536;
  c.num_hidden_layers = 30;
  c.num_attention_heads = 9;
  c.num_key_value_heads = 3;
  c.head_dim = 64;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 100000;
  c.tie_word_embeddings = true;
  auto m = CudaLlama::Synthesize(c, cuda::WType::kQ4_1, cuda::WType::kQ8_0, 1);
  ASSERT_TRUE(m.ok()) << m.status().message();
  ASSERT_TRUE((*m)->AllocateKvCache(KvDtype::kBF16, 64, 16, 1024).ok());
  std::vector<int32_t> tokens(100, 17);
  std::vector<float> logits;
  Status s = (*m)->Forward(MakeLayout({{tokens, 0, 100, {0, 1, 2, 3, 4, 5, 6}}}, 16), &logits);
  ASSERT_TRUE(s.ok()) << s.message();
  ASSERT_EQ(logits.size(), 49152u);
  for (float v : logits) ASSERT_TRUE(std::isfinite(v));
}

}  // namespace
}  // namespace kiln::native
