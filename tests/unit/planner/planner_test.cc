#include "kiln/planner/planner.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "kiln/planner/plan_output.h"

namespace kiln::planner {
namespace {

constexpr int64_t kMiB = int64_t{1} << 20;
constexpr int64_t kGiB = int64_t{1} << 30;

// The public config.json values of each model (Hugging Face hub).
formats::ModelConfig Llama(int64_t hidden, int64_t inter, int64_t layers, int64_t heads,
                           int64_t kv_heads, int64_t vocab, int64_t context, bool tied) {
  formats::ModelConfig c;
  c.model_type = "llama";
  c.hidden_size = hidden;
  c.intermediate_size = inter;
  c.num_hidden_layers = layers;
  c.num_attention_heads = heads;
  c.num_key_value_heads = kv_heads;
  c.head_dim = hidden / heads;
  c.vocab_size = vocab;
  c.max_position_embeddings = context;
  c.tie_word_embeddings = tied;
  c.torch_dtype = "bfloat16";
  return c;
}
formats::ModelConfig SmolLM2_135M() { return Llama(576, 1536, 30, 9, 3, 49152, 8192, true); }
formats::ModelConfig Llama31_8B() { return Llama(4096, 14336, 32, 32, 8, 128256, 131072, false); }
formats::ModelConfig Llama31_70B() { return Llama(8192, 28672, 80, 64, 8, 128256, 131072, false); }
formats::ModelConfig Qwen25_7B() {
  formats::ModelConfig c = Llama(3584, 18944, 28, 28, 4, 152064, 32768, false);
  c.model_type = "qwen2";   // q/k/v biases, no o_proj bias
  c.attention_bias = true;  // as ParseHfConfig sets it for qwen2
  return c;
}

Device Gpu(const std::string& name) {
  Result<Device> d = DeviceByName(name);
  EXPECT_TRUE(d.ok()) << d.status().ToString();
  return d.value();
}
Device Cpu(int64_t ram) { return Device{"cpu", DeviceKind::kCpu, ram}; }

TEST(CountParameters, MatchesThePublishedCounts) {
  EXPECT_EQ(CountParameters(SmolLM2_135M()), 134'515'008);
  EXPECT_EQ(CountParameters(Qwen25_7B()), 7'615'616'512);
  EXPECT_EQ(CountParameters(Llama31_8B()), 8'030'261'248);
  EXPECT_EQ(CountParameters(Llama31_70B()), 70'553'706'496);
}

TEST(FactsFromConfig, WeighsParametersByTheDtype) {
  ModelFacts f = FactsFromConfig(Llama31_8B(), "llama");
  EXPECT_EQ(f.weight_bytes, 8'030'261'248LL * 2);
  // On the CPU the matrices and both vocabulary matrices stay bf16 and the 266,240 norm
  // weights are f32.
  EXPECT_EQ(f.cpu_weight_bytes, (8'030'261'248LL - 266'240) * 2 + 266'240 * 4);
  EXPECT_FALSE(f.weight_bytes_from_files);
  formats::ModelConfig no_dtype = Llama31_8B();
  no_dtype.torch_dtype.clear();
  EXPECT_EQ(FactsFromConfig(no_dtype, "llama").weight_bytes, 8'030'261'248LL * 4);
}

struct Case {
  const char* name;
  formats::ModelConfig config;
  Device device;
  std::string prefs;  // "key=value" pairs, space-separated
  // Expected, worked out by hand from the formulas in docs/plan-format.md.
  int64_t budget, weights, activations, kv_per_token, kv_blocks, max_model_len, max_num_seqs,
      max_num_batched_tokens;
};

Preferences Parse(const std::string& text) {
  Preferences p;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find(' ', start);
    if (end == std::string::npos) end = text.size();
    const std::string kv = text.substr(start, end - start);
    const size_t eq = kv.find('=');
    EXPECT_TRUE(SetPreference(kv.substr(0, eq), kv.substr(eq + 1), &p).ok()) << kv;
    start = end + 1;
  }
  return p;
}

TEST(MakePlan, TableOfCases) {
  const Case cases[] = {
      // SmolLM2 on a 16 GiB CPU: half the RAM; bf16 matrices and embedding 134,479,872 x 2 and
      // f32 norms 35,136 x 4; activations 2048 x (576 + 1536 + 576 + 2 x 192) x 4 + 512 x 49152
      // x 4; KV 2 x 30 x 3 x 64 x 2 (auto: the bf16 model's dtype); blocks = (budget - weights -
      // activations) / (16 x 23,040).
      {"smollm2 cpu", SmolLM2_135M(), Cpu(16 * kGiB), "", 8'589'934'592, 269'100'288, 125'829'120,
       23'040, 22'230, 8192, 16, 2048},
      // Llama-3.1-8B on an H100 (81,559 MiB x 0.9): bf16 weights, 8192 tokens a step,
      // KV 2 x 32 x 8 x 128 x 2; blocks = (budget - weights - activations) / (16 x 131,072).
      {"llama8b h100", Llama31_8B(), Gpu("h100-80gb"), "", 76'968'728'985, 16'060'522'496,
       1'067'974'656, 131'072, 28'534, 131072, 256, 8192},
      // fp8 halves the KV bytes and doubles the blocks.
      {"llama8b h100 fp8", Llama31_8B(), Gpu("h100-80gb"), "kv_cache_dtype=fp8_e4m3",
       76'968'728'985, 16'060'522'496, 1'067'974'656, 65'536, 57'068, 131072, 256, 8192},
      // Qwen2.5-7B on an A100 40 GB: 2048 tokens a step below 70 GiB.
      {"qwen7b a100-40", Qwen25_7B(), Gpu("a100-40gb"), "", 38'654'705'664, 15'231'233'024,
       533'725'184, 57'344, 24'947, 32768, 256, 2048},
      // Llama-3.1-8B on one L4: 39,760 KV tokens, so max_model_len is fitted down to them.
      {"llama8b l4", Llama31_8B(), Gpu("l4"), "", 21'737'609'625, 16'060'522'496, 463'994'880,
       131'072, 2'485, 39'760, 256, 2048},
      // Llama-3.1-70B over 4 H100s: a quarter of the weights, 2 of 8 KV heads per GPU.
      {"llama70b 4xh100", Llama31_70B(), Gpu("h100-80gb"), "tensor_parallel_size=4", 76'968'728'985,
       35'276'853'248, 1'806'172'160, 81'920, 30'430, 131072, 256, 8192},
      // Llama-3.1-70B over 8 L4s, with the caller's limits kept as asked.
      {"llama70b 8xl4", Llama31_70B(), Gpu("l4"),
       "tensor_parallel_size=8 max_model_len=32768 max_num_seqs=64", 21'737'609'625, 17'638'426'624,
       648'544'256, 40'960, 5'265, 32768, 64, 2048},
      // A lower utilization, a larger block and a larger step on the CPU.
      {"smollm2 cpu prefs", SmolLM2_135M(), Cpu(16 * kGiB),
       "memory_utilization=0.25 block_size=32 max_num_batched_tokens=4096 max_num_seqs=4",
       4'294'967'296, 269'100'288, 4096 * 3072 * 4 + 512 * 49152 * 4, 23'040, 5'255, 8192, 4, 4096},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Result<Plan> plan = MakePlan(FactsFromConfig(c.config, c.name), c.device, Parse(c.prefs));
    ASSERT_TRUE(plan.ok()) << plan.status().ToString();
    const Plan& p = plan.value();
    EXPECT_EQ(p.budget_bytes, c.budget);
    EXPECT_EQ(p.weight_bytes, c.weights);
    EXPECT_EQ(p.activation_bytes, c.activations);
    EXPECT_EQ(p.kv_bytes_per_token, c.kv_per_token);
    EXPECT_EQ(p.kv_blocks, c.kv_blocks);
    EXPECT_EQ(p.kv_tokens, c.kv_blocks * p.block_size);
    EXPECT_EQ(p.kv_cache_bytes, p.kv_tokens * c.kv_per_token);
    EXPECT_EQ(p.max_model_len, c.max_model_len);
    EXPECT_EQ(p.max_num_seqs, c.max_num_seqs);
    EXPECT_EQ(p.max_num_batched_tokens, c.max_num_batched_tokens);
    EXPECT_DOUBLE_EQ(p.max_concurrency_at_max_model_len,
                     static_cast<double>(p.kv_tokens) / static_cast<double>(c.max_model_len));
  }
}

// Worked by hand: SmolLM2's layers hold 30 x (2 x 576 x 576 + 2 x 576 x 192 + 3 x 576 x 1536)
// = 106,168,320 matrix weights and its tied embedding 49,152 x 576 = 28,311,552; the rest
// (embedding and norms) is 28,346,688, of which 35,136 norm weights. On the CPU int8 takes the
// matrices and an own copy of the tied output at 34 bytes a block of 32, keeps the embedding in
// bf16 and the norms in f32; on a GPU the matrices take one byte and the rest its bf16.
TEST(FactsFromConfig, Int8WeightBytes) {
  ModelFacts smol = FactsFromConfig(SmolLM2_135M(), "smollm2");
  EXPECT_EQ(smol.cpu_int8_weight_bytes,
            (106'168'320LL + 28'311'552) / 32 * 34 + 28'311'552LL * 2 + 35'136 * 4);
  EXPECT_EQ(smol.int8_weight_bytes, 106'168'320LL + 28'346'688LL * 2);
  // Llama 3.1 8B (untied): 32 x 218,103,808 layer weights and its 525,336,576 output are int8;
  // the embedding (525,336,576, bf16) and norms (266,240, f32) are not.
  ModelFacts llama = FactsFromConfig(Llama31_8B(), "llama");
  EXPECT_EQ(llama.cpu_int8_weight_bytes,
            7'504'658'432LL / 32 * 34 + 525'336'576LL * 2 + 266'240 * 4);
  EXPECT_EQ(llama.int8_weight_bytes, 7'504'658'432LL + 525'602'816LL * 2);
  Plan cpu = MakePlan(smol, Cpu(16 * kGiB), Parse("quantization=int8")).value();
  EXPECT_EQ(cpu.weight_bytes, smol.cpu_int8_weight_bytes);
  EXPECT_EQ(cpu.quantization, "int8");
  EXPECT_NE(PlanToArgs(cpu).find(" --quantization int8"), std::string::npos);
  EXPECT_EQ(MakePlan(llama, Gpu("l4"), Parse("quantization=int8")).value().weight_bytes,
            llama.int8_weight_bytes);
  EXPECT_EQ(MakePlan(smol, Cpu(16 * kGiB), {}).value().weight_bytes, smol.cpu_weight_bytes);
}

// auto is the model's dtype, as in vLLM: bf16 for a bf16 model; f32 for an f32 one on the CPU
// (which computes in f32), bf16 on a GPU.
TEST(MakePlan, ResolvesAutoKvDtypeFromTheModelAndDevice) {
  ModelFacts f = FactsFromConfig(SmolLM2_135M(), "smollm2");
  EXPECT_FALSE(f.f32_weights);
  EXPECT_EQ(MakePlan(f, Cpu(16 * kGiB), {}).value().kv_cache_dtype, KvCacheDtype::kBF16);
  EXPECT_EQ(MakePlan(f, Gpu("l4"), {}).value().kv_cache_dtype, KvCacheDtype::kBF16);
  formats::ModelConfig f32_config = SmolLM2_135M();
  f32_config.torch_dtype = "float32";
  ModelFacts f32 = FactsFromConfig(f32_config, "smollm2-f32");
  EXPECT_TRUE(f32.f32_weights);
  EXPECT_EQ(MakePlan(f32, Cpu(16 * kGiB), {}).value().kv_cache_dtype, KvCacheDtype::kF32);
  EXPECT_EQ(MakePlan(f32, Gpu("l4"), {}).value().kv_cache_dtype, KvCacheDtype::kBF16);
  EXPECT_EQ(MakePlan(f32, Cpu(16 * kGiB), Parse("kv_cache_dtype=bf16")).value().kv_cache_dtype,
            KvCacheDtype::kBF16);
}

TEST(MakePlan, CpuKvDtypesCountTheirBytesAndFp8Scales) {
  ModelFacts f = FactsFromConfig(SmolLM2_135M(), "smollm2");
  const int64_t per_head = 2 * 30 * 3;  // keys and values, 30 layers, 3 KV heads of 64
  EXPECT_EQ(MakePlan(f, Cpu(16 * kGiB), Parse("kv_cache_dtype=f32")).value().kv_bytes_per_token,
            per_head * 64 * 4);
  EXPECT_EQ(MakePlan(f, Cpu(16 * kGiB), Parse("kv_cache_dtype=bf16")).value().kv_bytes_per_token,
            per_head * 64 * 2);
  // One byte a value and an f32 scale per token and head on the CPU; one byte on a GPU.
  EXPECT_EQ(MakePlan(f, Cpu(16 * kGiB), Parse("kv_cache_dtype=fp8")).value().kv_bytes_per_token,
            per_head * (64 + 4));
  EXPECT_EQ(MakePlan(f, Gpu("l4"), Parse("kv_cache_dtype=fp8")).value().kv_bytes_per_token,
            per_head * 64);
}

TEST(MakePlan, FittedLengthIsNoted) {
  Plan p = MakePlan(FactsFromConfig(Llama31_8B(), "llama"), Gpu("l4"), {}).value();
  ASSERT_EQ(p.notes.size(), 1u);
  EXPECT_NE(p.notes[0].find("131072 to 39760"), std::string::npos) << p.notes[0];
}

std::string FailureOf(const formats::ModelConfig& config, const Device& device,
                      const std::string& prefs) {
  Result<Plan> plan = MakePlan(FactsFromConfig(config, "model"), device, Parse(prefs));
  EXPECT_FALSE(plan.ok());
  return plan.ok() ? "" : plan.status().message();
}

TEST(MakePlan, SeventyBOnOneL4NamesTheGpusNeeded) {
  Result<Plan> plan = MakePlan(FactsFromConfig(Llama31_70B(), "m"), Gpu("l4"), {});
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.status().code(), StatusCode::kOutOfRange);
  // 141 GB of bf16 weights: 8 L4s hold 17.6 GB each, 4 would hold 35 GB each.
  EXPECT_NE(plan.status().message().find("tensor_parallel_size 8"), std::string::npos)
      << plan.status().message();
}

TEST(MakePlan, TooLongMaxModelLenNamesTheLargestThatFits) {
  // One L4 holds 39,760 tokens of Llama-3.1-8B's cache; two split the weights and the cache.
  const std::string msg = FailureOf(Llama31_8B(), Gpu("l4"), "max_model_len=131072");
  EXPECT_NE(msg.find("largest max_model_len that fits is 39760"), std::string::npos) << msg;
  EXPECT_NE(msg.find("tensor_parallel_size 2"), std::string::npos) << msg;
}

TEST(MakePlan, MaxModelLenFitsUpToTheKvTokens) {
  // Llama-3.1-8B on one L4 holds 2,485 blocks of 16 tokens: 39,760 fits, 39,761 needs a 2,486th.
  ModelFacts f = FactsFromConfig(Llama31_8B(), "llama");
  Result<Plan> fits = MakePlan(f, Gpu("l4"), Parse("max_model_len=39760"));
  ASSERT_TRUE(fits.ok()) << fits.status().ToString();
  EXPECT_DOUBLE_EQ(fits.value().max_concurrency_at_max_model_len, 1.0);
  const std::string msg = FailureOf(Llama31_8B(), Gpu("l4"), "max_model_len=39761");
  EXPECT_NE(msg.find("largest max_model_len that fits is 39760"), std::string::npos) << msg;
}

TEST(MakePlan, CpuFailureNamesTheMemoryNeeded) {
  // Weights (70,553,706,496 - 1,318,912 norm weights) x 2 + 1,318,912 x 4 = 141,110,050,816,
  // + activations 648,544,256 + 1024 tokens x 327,680 bytes of bf16 KV, over 0.5:
  // 284,188,278,784 bytes = 264.67 GiB.
  const std::string msg = FailureOf(Llama31_70B(), Cpu(64 * kGiB), "");
  EXPECT_NE(msg.find("needs 264.67 GiB of RAM"), std::string::npos) << msg;
  EXPECT_NE(msg.find("has 64.00 GiB"), std::string::npos) << msg;
}

TEST(MakePlan, RejectsWhatCannotBeServed) {
  ModelFacts smol = FactsFromConfig(SmolLM2_135M(), "smollm2");
  auto fails = [&](const Device& device, const std::string& prefs, const std::string& expected) {
    Result<Plan> plan = MakePlan(smol, device, Parse(prefs));
    ASSERT_FALSE(plan.ok()) << prefs;
    EXPECT_NE(plan.status().message().find(expected), std::string::npos) << plan.status().message();
  };
  fails(Cpu(16 * kGiB), "max_model_len=8193", "exceeds the model's context");
  fails(Cpu(16 * kGiB), "tensor_parallel_size=2", "one device");
  fails(Gpu("l4"), "kv_cache_dtype=f32", "bf16 or fp8_e4m3");
  fails(Gpu("l4"), "tensor_parallel_size=2", "does not divide the model's 9 attention heads");
  fails(Gpu("l4"), "max_num_seqs=512 max_num_batched_tokens=256", "less than max_num_seqs");
  fails(Cpu(16 * kGiB), "pipeline_parallel_size=2", "one device");
  fails(Gpu("l4"), "pipeline_parallel_size=31", "exceeds the model's 30 layers");
}

TEST(MakePlan, PipelineParallelismSplitsLayersAndWeights) {
  // Llama-3.1-8B: 32 layers. Two stages each hold half the weights and 16 layers' KV cache; with
  // tensor parallelism 2 as well, four GPUs hold a quarter of the weights each.
  ModelFacts f = FactsFromConfig(Llama31_8B(), "llama");
  Plan one = MakePlan(f, Gpu("l4"), {}).value();
  Plan pp2 = MakePlan(f, Gpu("l4"), Parse("pipeline_parallel_size=2")).value();
  EXPECT_EQ(pp2.pipeline_parallel_size, 2);
  EXPECT_EQ(pp2.weight_bytes, (one.weight_bytes + 1) / 2);
  EXPECT_EQ(pp2.kv_bytes_per_token * 2, one.kv_bytes_per_token);
  Plan both =
      MakePlan(f, Gpu("l4"), Parse("tensor_parallel_size=2 pipeline_parallel_size=2")).value();
  EXPECT_EQ(both.weight_bytes, (one.weight_bytes + 3) / 4);
  EXPECT_NE(PlanToArgs(both).find("--tensor-parallel-size 2 --pipeline-parallel-size 2 "),
            std::string::npos)
      << PlanToArgs(both);
  EXPECT_NE(PlanToJson(f, Parse("pipeline_parallel_size=2"), pp2).find("\"count\": 2"),
            std::string::npos);
}

TEST(MakePlan, StepBudgetRisesToMaxNumSeqs) {
  ModelFacts smol = FactsFromConfig(SmolLM2_135M(), "smollm2");
  Plan p = MakePlan(smol, Gpu("l4"), Parse("max_num_seqs=4096")).value();
  EXPECT_EQ(p.max_num_batched_tokens, 4096);
}

TEST(SetPreference, RejectsUnknownKeysAndBadValues) {
  Preferences p;
  EXPECT_FALSE(SetPreference("max_model_length", "8", &p).ok());
  EXPECT_FALSE(SetPreference("max_model_len", "8k", &p).ok());
  EXPECT_FALSE(SetPreference("max_model_len", "0", &p).ok());
  EXPECT_FALSE(SetPreference("block_size", "24", &p).ok());
  EXPECT_FALSE(SetPreference("memory_utilization", "1.5", &p).ok());
  EXPECT_FALSE(SetPreference("kv_cache_dtype", "int8", &p).ok());
  EXPECT_FALSE(SetPreference("enable_prefix_caching", "yes", &p).ok());
  EXPECT_FALSE(SetPreference("quantization", "int4", &p).ok());
  EXPECT_TRUE(SetPreference("gpu_memory_utilization", "0.8", &p).ok());
  EXPECT_DOUBLE_EQ(*p.memory_utilization, 0.8);
  EXPECT_TRUE(SetPreference("kv_cache_dtype", "fp8", &p).ok());
  EXPECT_EQ(p.kv_cache_dtype, KvCacheDtype::kFp8E4M3);
  EXPECT_TRUE(SetPreference("enable_prefix_caching", "false", &p).ok());
  EXPECT_FALSE(p.enable_prefix_caching);
}

TEST(Devices, KnownGpusAndMeminfo) {
  EXPECT_EQ(Gpu("h200").memory_bytes, 143771 * kMiB);
  EXPECT_EQ(Gpu("a100-80gb").memory_bytes, 81920 * kMiB);
  EXPECT_EQ(Gpu("l40s").memory_bytes, 46068 * kMiB);
  Result<Device> unknown = DeviceByName("v100");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("h100-80gb"), std::string::npos);

  const std::string path = testing::TempDir() + "/meminfo";
  std::ofstream(path) << "MemTotal:       16384000 kB\nMemFree:         1000 kB\n";
  Result<Device> cpu = DeviceByName("cpu", path);
  ASSERT_TRUE(cpu.ok()) << cpu.status().ToString();
  EXPECT_EQ(cpu.value().memory_bytes, 16'384'000LL * 1024);
  std::ofstream(path) << "MemFree: 1000 kB\n";
  EXPECT_FALSE(ReadMemTotal(path).ok());
  EXPECT_TRUE(ReadMemTotal("/proc/meminfo").ok());

  Result<Device> pod = DeviceByName("cpu:4096");
  ASSERT_TRUE(pod.ok()) << pod.status().ToString();
  EXPECT_EQ(pod.value().kind, DeviceKind::kCpu);
  EXPECT_EQ(pod.value().memory_bytes, 4096 * kMiB);
  Result<Device> gpu = DeviceByName("gpu:81559");
  ASSERT_TRUE(gpu.ok()) << gpu.status().ToString();
  EXPECT_EQ(gpu.value().kind, DeviceKind::kGpu);
  EXPECT_EQ(gpu.value().memory_bytes, 81559 * kMiB);
  for (const char* bad : {"gpu:", "gpu:-1", "gpu:0", "cpu:12x", "tpu:100"}) {
    EXPECT_FALSE(DeviceByName(bad).ok()) << bad;
  }
}

TEST(ReadModelFacts, BareConfigJson) {
  const std::string path = testing::TempDir() + "/planner_config.json";
  std::ofstream(path) << R"({"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"],
    "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
    "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064,
    "max_position_embeddings": 32768, "tie_word_embeddings": false, "torch_dtype": "bfloat16"})";
  Result<ModelFacts> f = ReadModelFacts(path);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f.value().source, "config");
  EXPECT_EQ(f.value().parameters, 7'615'616'512);
  EXPECT_EQ(f.value().weight_bytes, 7'615'616'512LL * 2);
  EXPECT_FALSE(ReadModelFacts(testing::TempDir() + "/missing").ok());
}

TEST(PlanOutput, ArgsCarryThePlan) {
  ModelFacts f = FactsFromConfig(Llama31_8B(), "llama");
  Preferences prefs = Parse("kv_cache_dtype=fp8_e4m3 tensor_parallel_size=2");
  Plan p = MakePlan(f, Gpu("h100-80gb"), prefs).value();
  EXPECT_EQ(PlanToArgs(p),
            "--max-model-len 131072 --max-num-seqs 256 --max-num-batched-tokens 8192 "
            "--gpu-memory-utilization 0.9 --tensor-parallel-size 2 --block-size 16 "
            "--kv-cache-dtype fp8_e4m3 --enable-prefix-caching\n");
  Plan cpu = MakePlan(f, Cpu(128 * kGiB), Parse("max_model_len=8192")).value();
  EXPECT_EQ(PlanToArgs(cpu),
            "--max-model-len 8192 --max-num-seqs 16 --max-num-batched-tokens "
            "2048 --kv-cache-memory " +
                std::to_string(cpu.kv_cache_bytes) +
                " --kv-cache-dtype bf16 --enable-prefix-caching\n");
  Plan cpu_fp8 =
      MakePlan(f, Cpu(128 * kGiB), Parse("max_model_len=8192 kv_cache_dtype=fp8")).value();
  EXPECT_NE(PlanToArgs(cpu_fp8).find(" --kv-cache-dtype fp8_e4m3 "), std::string::npos);
  const std::string json = PlanToJson(f, prefs, p);
  EXPECT_NE(json.find("\"format_version\": 1"), std::string::npos);
  EXPECT_NE(json.find("\"kv_blocks\": " + std::to_string(p.kv_blocks)), std::string::npos);
  EXPECT_NE(json.find("\"serve_args\": ["), std::string::npos);

  const std::vector<std::string> cpu_args = PlanToServeArgs(cpu);
  const std::vector<std::string> want_cpu = {
      "--max-model-len",          "8192",
      "--max-num-seqs",           "16",
      "--max-num-batched-tokens", "2048",
      "--kv-cache-memory",        std::to_string(cpu.kv_cache_bytes),
      "--kv-cache-dtype",         "bf16",
      "--enable-prefix-caching"};
  EXPECT_EQ(cpu_args, want_cpu);
  const std::vector<std::string> gpu_args = PlanToServeArgs(p);
  ASSERT_GE(gpu_args.size(), 12u);
  EXPECT_EQ(gpu_args[9], "fp8_e4m3");
  EXPECT_EQ(gpu_args[10], "--device");
  EXPECT_EQ(gpu_args[11], "cuda");
}

}  // namespace
}  // namespace kiln::planner
