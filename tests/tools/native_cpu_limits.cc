// This CPU's limits for the native runtime's work, on all its threads at once, printed as one
// JSON line for bench/native_bench.py to set measured speeds against:
//   read_gb_s    memory read bandwidth: a 1 GiB buffer (far past any cache) summed with 256-bit
//                loads, the best of 5 passes
//   f32_gflops   fused multiply-add peak: 12 independent 8-lane FMA chains per thread
//   int8_gops    8-bit multiply-add peak, counting each multiply and each add: vpdpbusd on
//                AVX-VNNI, vpmaddubsw + vpmaddwd + vpaddd on AVX2 (what the kernels use)
// On a CPU without AVX2 it prints the bandwidth only (the portable kernels set no peak). The path
// is the kernels' own: the best this CPU runs, or the one KILN_CPU_FEATURES names.
//
//   native_cpu_limits [--threads N]
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "kiln/executors/native/cpu/features.h"

namespace cpu = kiln::native::cpu;

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Runs fn(thread index) on `threads` threads at once; returns the wall time.
template <typename Fn>
double OnAllThreads(int threads, Fn fn) {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      ++ready;
      while (!go.load()) {
      }
      fn(t);
    });
  }
  while (ready.load() < threads) {
  }
  const auto start = Clock::now();
  go = true;
  for (auto& th : pool) th.join();
  return Seconds(start, Clock::now());
}

__attribute__((target("avx2"))) float SumRange(const float* p, size_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 32 <= n; i += 32) {
    a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
    a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
    a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
    a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
  }
  alignas(32) float out[8];
  _mm256_store_ps(out, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  return out[0] + out[7];
}

float SumRangePortable(const float* p, size_t n) {
  float acc[8] = {};
  for (size_t i = 0; i < n; i += 8) {
    for (int j = 0; j < 8; ++j) acc[j] += p[i + j];
  }
  return acc[0] + acc[7];
}

double ReadBandwidth(int threads, bool avx2) {
  const size_t bytes = size_t{1} << 30, floats = bytes / sizeof(float);
  float* buf = static_cast<float*>(std::aligned_alloc(64, bytes));
  for (size_t i = 0; i < floats; ++i) buf[i] = static_cast<float>(i & 7);
  std::vector<float> sink(threads);
  double best = 1e9;
  for (int pass = 0; pass < 5; ++pass) {
    const double s = OnAllThreads(threads, [&](int t) {
      const size_t per = floats / threads / 32 * 32;
      sink[t] = avx2 ? SumRange(buf + t * per, per) : SumRangePortable(buf + t * per, per);
    });
    best = std::min(best, s);
  }
  float total = 0;
  for (float v : sink) total += v;
  std::free(buf);
  if (total == -1.0f) std::puts("");  // keep the sums
  return static_cast<double>(bytes) / best / 1e9;
}

constexpr int64_t kIterations = 100'000'000;

__attribute__((target("avx2,fma"))) float FmaChains() {
  __m256 acc[12];
  for (int j = 0; j < 12; ++j) acc[j] = _mm256_set1_ps(0.001f * j);
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (int64_t i = 0; i < kIterations; ++i) {
    for (int j = 0; j < 12; ++j) acc[j] = _mm256_fmadd_ps(acc[j], a, b);
  }
  __m256 sum = acc[0];
  for (int j = 1; j < 12; ++j) sum = _mm256_add_ps(sum, acc[j]);
  alignas(32) float out[8];
  _mm256_store_ps(out, sum);
  return out[0];
}

// 12 chains of 32 byte x byte products summed into 8 int32 lanes: 64 multiply-adds each.
__attribute__((target("avx2"))) int Int8ChainsAvx2() {
  __m256i acc[12];
  for (int j = 0; j < 12; ++j) acc[j] = _mm256_set1_epi32(j);
  const __m256i a = _mm256_set1_epi8(3), b = _mm256_set1_epi8(5), ones = _mm256_set1_epi16(1);
  for (int64_t i = 0; i < kIterations; ++i) {
    for (int j = 0; j < 12; ++j) {
      acc[j] = _mm256_add_epi32(acc[j], _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), ones));
    }
  }
  __m256i sum = acc[0];
  for (int j = 1; j < 12; ++j) sum = _mm256_add_epi32(sum, acc[j]);
  return _mm256_extract_epi32(sum, 0);
}

__attribute__((target("avx2,avxvnni"))) int Int8ChainsVnni() {
  __m256i acc[12];
  for (int j = 0; j < 12; ++j) acc[j] = _mm256_set1_epi32(j);
  const __m256i a = _mm256_set1_epi8(3), b = _mm256_set1_epi8(5);
  for (int64_t i = 0; i < kIterations; ++i) {
    for (int j = 0; j < 12; ++j) acc[j] = _mm256_dpbusd_avx_epi32(acc[j], a, b);
  }
  __m256i sum = acc[0];
  for (int j = 1; j < 12; ++j) sum = _mm256_add_epi32(sum, acc[j]);
  return _mm256_extract_epi32(sum, 0);
}

__attribute__((target("avx512f,avx512bw,avx512vnni"))) int Int8ChainsAvx512() {
  __m512i acc[12];
  for (int j = 0; j < 12; ++j) acc[j] = _mm512_set1_epi32(j);
  const __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(5);
  for (int64_t i = 0; i < kIterations; ++i) {
    for (int j = 0; j < 12; ++j) acc[j] = _mm512_dpbusd_epi32(acc[j], a, b);
  }
  __m512i sum = acc[0];
  for (int j = 1; j < 12; ++j) sum = _mm512_add_epi32(sum, acc[j]);
  alignas(64) int lanes[16];
  _mm512_store_si512(lanes, sum);
  return lanes[0];
}

}  // namespace

int main(int argc, char** argv) {
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
      threads = std::max(1, std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: %s [--threads N]\n", argv[0]);
      return 2;
    }
  }
  // The path the kernels take (KILN_CPU_FEATURES may force a lower one), so the peak printed is
  // the one they can reach.
  const kiln::Result<cpu::Isa> selected = cpu::SelectIsa();
  if (!selected.ok()) {
    std::fprintf(stderr, "%s\n", selected.status().ToString().c_str());
    return 2;
  }
  const cpu::Isa best = *selected;
  const bool avx2 = best != cpu::Isa::kPortable;
  const double read = ReadBandwidth(threads, avx2);
  std::printf("{\"threads\": %d, \"isa\": \"%s\", \"read_gb_s\": %.2f", threads, cpu::IsaName(best),
              read);
  if (avx2) {
    std::vector<float> fsink(threads);
    const double f = OnAllThreads(threads, [&](int t) { fsink[t] = FmaChains(); });
    const double flops = 2.0 * 8 * 12 * kIterations * threads;
    // The int8 instruction of the best path's quantized matrix multiply.
    const bool zmm = best == cpu::Isa::kAvx512;
    const bool vnni = best == cpu::Isa::kAvxVnni;
    std::vector<int> isink(threads);
    const double s = OnAllThreads(threads, [&](int t) {
      isink[t] = zmm ? Int8ChainsAvx512() : vnni ? Int8ChainsVnni() : Int8ChainsAvx2();
    });
    const double ops = (zmm ? 2.0 : 1.0) * 2.0 * 32 * 12 * kIterations * threads;
    std::printf(", \"f32_gflops\": %.1f, \"int8_gops\": %.1f, \"int8_instruction\": \"%s\"",
                flops / f / 1e9, ops / s / 1e9,
                zmm    ? "vpdpbusd zmm"
                : vnni ? "vpdpbusd"
                       : "vpmaddubsw+vpmaddwd");
    if (fsink[0] == -1.0f || isink[0] == -1) std::puts("");
  }
  std::printf("}\n");
  return 0;
}
