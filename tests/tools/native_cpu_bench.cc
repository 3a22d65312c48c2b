// Microbenchmark of the native runtime's MatMul: for each path this CPU runs and each weight
// type, the time of [m x k] x [k x n] at decode and small-batch shapes on 1 and 2 threads, and
// the weight bytes per second it implies (weights are nearly all the bytes read at small m).
//
//   native_cpu_bench [--min-seconds S] [--path portable|avx2] [--type f32|q8_0|q4_0|q4_1] [--cold]
//
// With --cold each call reads a different copy of the weights, the copies together past any
// cache (256 MiB), as a model's layers are read in a forward pass: the figures are then from
// memory, not cache.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kiln/base/half.h"
#include "kiln/executors/native/cpu/kernels.h"

namespace cpu = kiln::native::cpu;

namespace {

std::vector<uint8_t> RandomWeights(cpu::WeightType type, int64_t rows, int64_t cols,
                                   std::mt19937& rng) {
  std::vector<uint8_t> data(rows * cpu::RowBytes(type, cols));
  std::uniform_int_distribution<int> byte(0, 255);
  for (uint8_t& b : data) b = static_cast<uint8_t>(byte(rng));
  if (type == cpu::WeightType::kF32) {
    std::normal_distribution<float> normal(0.0f, 0.5f);
    for (size_t i = 0; i < data.size(); i += 4) {
      float v = normal(rng);
      std::memcpy(&data[i], &v, 4);
    }
    return data;
  }
  if (type == cpu::WeightType::kBF16 || type == cpu::WeightType::kF16) {
    std::normal_distribution<float> normal(0.0f, 0.5f);
    for (size_t i = 0; i < data.size(); i += 2) {
      const float v = normal(rng);
      uint16_t h = kiln::FloatToFp16(v);
      if (type == cpu::WeightType::kBF16) {
        uint32_t bits;
        std::memcpy(&bits, &v, 4);
        h = static_cast<uint16_t>(bits >> 16);
      }
      std::memcpy(&data[i], &h, 2);
    }
    return data;
  }
  // Finite scales: random bytes there could be NaN or infinity.
  size_t block = cpu::RowBytes(type, 32);
  int halves = type == cpu::WeightType::kQ4_1 ? 2 : 1;
  for (size_t b = 0; b < data.size(); b += block) {
    for (int h = 0; h < halves; ++h) {
      uint16_t v = kiln::FloatToFp16(0.01f + 0.001f * static_cast<float>(byte(rng)));
      std::memcpy(&data[b + 2 * h], &v, 2);
    }
  }
  return data;
}

// Median seconds of one MatMul, over repetitions filling at least min_seconds; each call takes
// the next of `copies`.
double TimeMatMul(cpu::ThreadPool& pool, cpu::Isa isa, const std::vector<cpu::WeightMatrix>& copies,
                  const std::vector<float>& x, int64_t m, std::vector<float>& y,
                  cpu::MatMulScratch* scratch, double min_seconds) {
  using Clock = std::chrono::steady_clock;
  size_t next = 0;
  auto call = [&] {
    const cpu::WeightMatrix& w = copies[next++ % copies.size()];
    cpu::MatMul(pool, isa, w, x.data(), m, w.cols, y.data(), w.rows, scratch);
  };
  for (size_t i = 0; i < std::max<size_t>(3, copies.size()); ++i) call();
  std::vector<double> samples;
  auto start = Clock::now();
  while (samples.size() < 5 ||
         std::chrono::duration<double>(Clock::now() - start).count() < min_seconds) {
    auto t0 = Clock::now();
    call();
    samples.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  std::sort(samples.begin(), samples.end());
  return samples[samples.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  double min_seconds = 0.3;
  std::string only_path, only_type;
  bool cold = false;
  int64_t only_rows = 0;
  int only_threads = 0;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--min-seconds") == 0 && i + 1 < argc) {
      min_seconds = std::atof(argv[++i]);
    } else if (std::strcmp(argv[i], "--path") == 0 && i + 1 < argc) {
      only_path = argv[++i];
    } else if (std::strcmp(argv[i], "--type") == 0 && i + 1 < argc) {
      only_type = argv[++i];
    } else if (std::strcmp(argv[i], "--rows") == 0 && i + 1 < argc) {
      only_rows = std::atoll(argv[++i]);
    } else if (std::strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
      only_threads = std::atoi(argv[++i]);
    } else if (std::strcmp(argv[i], "--cold") == 0) {
      cold = true;
    } else {
      std::fprintf(stderr,
                   "usage: %s [--min-seconds S] [--path NAME] [--type NAME] [--rows M] "
                   "[--threads N] [--cold]\n",
                   argv[0]);
      return 2;
    }
  }
  std::printf("cpu: %s (best path: %s)\n", cpu::DetectCpuFeatures().model_name.c_str(),
              cpu::IsaName(cpu::BestIsa()));
  struct Shape {
    int64_t m, k, n;
  };
  // Decode, batched decode and prefill shapes of the default model (the MLP's up and down
  // projections, the output layer).
  const Shape shapes[] = {{1, 576, 3072},  {2, 576, 3072},  {4, 576, 3072},   {16, 576, 3072},
                          {64, 576, 3072}, {64, 1536, 576}, {512, 576, 3072}, {512, 1536, 576},
                          {1, 576, 49152}, {16, 576, 49152}};
  const cpu::WeightType types[] = {cpu::WeightType::kF32,  cpu::WeightType::kBF16,
                                   cpu::WeightType::kF16,  cpu::WeightType::kQ8_0,
                                   cpu::WeightType::kQ4_0, cpu::WeightType::kQ4_1};
  std::vector<cpu::Isa> paths = {cpu::Isa::kPortable};
  for (cpu::Isa isa : {cpu::Isa::kAvx2, cpu::Isa::kAvxVnni, cpu::Isa::kAvx512}) {
    if (cpu::CanRun(isa)) paths.push_back(isa);
  }

  std::mt19937 rng(1);
  std::printf("%-9s %-5s %-18s %7s %10s %8s\n", "path", "type", "shape", "threads", "us", "GB/s");
  for (cpu::Isa isa : paths) {
    if (!only_path.empty() && only_path != cpu::IsaName(isa)) continue;
    for (cpu::WeightType type : types) {
      if (!only_type.empty() && only_type != cpu::WeightTypeName(type)) continue;
      for (const Shape& s : shapes) {
        if (only_rows != 0 && only_rows != s.m) continue;
        std::vector<uint8_t> data = RandomWeights(type, s.n, s.k, rng);
        std::vector<uint8_t> packed(cpu::PackedBytes(type, s.n, s.k));  // what the kernels read
        cpu::PackWeights(type, s.n, s.k, data.data(), packed.data());
        // One copy, or (--cold) as many as fill 256 MiB.
        const size_t count =
            cold ? std::max<size_t>(2, (size_t{256} << 20) / packed.size() + 1) : 1;
        std::vector<std::vector<uint8_t>> stored(count, packed);
        std::vector<cpu::WeightMatrix> copies;
        for (const std::vector<uint8_t>& c : stored) copies.push_back({type, s.n, s.k, c.data()});
        std::normal_distribution<float> normal(0.0f, 1.0f);
        std::vector<float> x(s.m * s.k), y(s.m * s.n);
        for (float& v : x) v = normal(rng);
        cpu::MatMulScratch scratch;
        for (int threads : {1, 2}) {
          if (only_threads != 0 && only_threads != threads) continue;
          cpu::ThreadPool pool(threads);
          double seconds = TimeMatMul(pool, isa, copies, x, s.m, y, &scratch, min_seconds);
          std::string shape =
              std::to_string(s.m) + "x" + std::to_string(s.k) + "x" + std::to_string(s.n);
          std::printf("%-9s %-5s %-18s %7d %10.1f %8.2f\n", cpu::IsaName(isa),
                      cpu::WeightTypeName(type), shape.c_str(), threads, seconds * 1e6,
                      static_cast<double>(packed.size()) / seconds / 1e9);
          std::fflush(stdout);
        }
      }
    }
  }
  return 0;
}
