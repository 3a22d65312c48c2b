// Runs one prompt through the native runtime's executor and writes every logit row it computes,
// for the Python tests to compare against a numpy reference forward pass.
//
//   native_logits <model> <ids file> <out file> [chunk] [decode steps]
//
// The prompt (whitespace-separated token ids) is prefilled in chunks of `chunk` tokens (default:
// all at once), each chunk returning its logits for every position; then `decode steps` greedy
// tokens are decoded one step at a time. <out file> gets float32 rows of vocab_size logits: one
// per prompt position, then one per decode step. The generated ids go to stdout.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "kiln/engine/block_manager.h"
#include "kiln/executors/native/native_executor.h"

int main(int argc, char** argv) {
  using namespace kiln;
  if (argc < 4) {
    std::cerr << "usage: native_logits <model> <ids file> <out file> [chunk] [decode steps]\n";
    return 2;
  }
  std::vector<int32_t> prompt;
  {
    std::ifstream in(argv[2]);
    for (int32_t id; in >> id;) prompt.push_back(id);
  }
  if (prompt.empty()) {
    std::cerr << "empty prompt\n";
    return 2;
  }
  const int64_t chunk = argc > 4 ? std::stoll(argv[4]) : static_cast<int64_t>(prompt.size());
  const int64_t decode = argc > 5 ? std::stoll(argv[5]) : 0;

  native::NativeExecutorOptions options;
  options.max_model_len = static_cast<int64_t>(prompt.size()) + decode + 1;
  if (const char* threads = std::getenv("KILN_NUM_THREADS")) options.threads = std::atoi(threads);
  // KILN_QUANTIZATION: as kiln serve's --quantization (none or int8).
  if (const char* q = std::getenv("KILN_QUANTIZATION")) options.quantization = q;
  auto executor = native::NativeExecutor::Load(argv[1], options);
  if (!executor.ok()) {
    std::cerr << executor.status().message() << "\n";
    return 1;
  }
  native::NativeExecutor& e = **executor;
  // KILN_KV_CACHE_DTYPE: the cache's element type (native/kv_cache.h names), f32 by default.
  const char* dtype_name = std::getenv("KILN_KV_CACHE_DTYPE");
  auto dtype = native::ParseKvDtype(dtype_name ? dtype_name : "f32");
  if (!dtype.ok()) {
    std::cerr << dtype.status().message() << "\n";
    return 1;
  }
  if (Status s = e.AllocateKvCache(*dtype, 0); !s.ok()) {
    std::cerr << s.message() << "\n";
    return 1;
  }
  engine::KvCacheGeometry geometry = e.kv_geometry();
  engine::BlockManager blocks(geometry.num_blocks, geometry.block_size, false,
                              geometry.group_windows);
  engine::Sequence seq;
  seq.tokens = prompt;
  seq.num_prompt_tokens = static_cast<int64_t>(prompt.size());
  std::ofstream out(argv[3], std::ios::binary);
  std::vector<float> logits;
  auto run = [&](int64_t start, int64_t count, bool all_logits) -> bool {
    // As the scheduler does: sliding-window blocks out of every later query's sight go first.
    blocks.FreeOutOfWindow(&seq.tables, start);
    if (!blocks.EnsureCapacity(&seq.tables, start + count)) return false;
    engine::SchedulerStep step;
    step.chunks.push_back({&seq, start, count, start + count == seq.num_tokens(), all_logits});
    step.num_tokens = count;
    logits.clear();
    kiln::Status s = e.Execute(step, &logits);
    if (!s.ok()) {
      std::cerr << s.message() << "\n";
      return false;
    }
    out.write(reinterpret_cast<const char*>(logits.data()),
              static_cast<std::streamsize>(logits.size() * sizeof(float)));
    return true;
  };
  for (int64_t start = 0; start < seq.num_prompt_tokens; start += chunk) {
    if (!run(start, std::min(chunk, seq.num_prompt_tokens - start), true)) return 1;
  }
  const int64_t vocab = e.vocab_size();
  for (int64_t d = 0; d < decode; ++d) {
    const float* last = logits.data() + logits.size() - vocab;
    int32_t next = static_cast<int32_t>(std::max_element(last, last + vocab) - last);
    std::cout << next << (d + 1 < decode ? " " : "\n");
    seq.tokens.push_back(next);
    if (!run(seq.num_tokens() - 1, 1, false)) return 1;
  }
  return 0;
}
