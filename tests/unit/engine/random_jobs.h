// Random generation jobs for the scheduler tests: prompts of 1 to 40 tokens (some after a shared
// 24-token prefix) and 1 to 30 tokens to generate.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace kiln::engine {

struct Job {
  std::vector<int32_t> prompt;
  int64_t max_new;
};

// Job i starts with the shared prefix when share_every > 0 and i % share_every == 0.
inline std::vector<Job> RandomJobs(int count, uint64_t seed, int share_every) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> prefix;
  for (int i = 0; i < 24; ++i) prefix.push_back(static_cast<int32_t>(rng() % 1000));
  std::vector<Job> jobs;
  for (int i = 0; i < count; ++i) {
    Job j;
    if (share_every > 0 && i % share_every == 0) j.prompt = prefix;
    int len = 1 + static_cast<int>(rng() % 40);
    for (int k = 0; k < len; ++k) j.prompt.push_back(static_cast<int32_t>(rng() % 1000));
    j.max_new = 1 + static_cast<int64_t>(rng() % 30);
    jobs.push_back(j);
  }
  return jobs;
}

}  // namespace kiln::engine
