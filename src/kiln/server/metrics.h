// Prometheus text exposition (format 0.0.4) for the server's metrics, under vLLM's metric names
// and labels (`vllm:` prefix, `model_name` label), so dashboards and routers built for vLLM read
// Kiln unchanged. Updates are lock-free or take a short lock; Render() may run concurrently.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace kiln::server {

class Histogram {
 public:
  explicit Histogram(std::vector<double> buckets);
  void Observe(double value);
  // Appends the _bucket/_sum/_count lines for `name` with `labels` (e.g. model_name="x").
  void Render(const std::string& name, const std::string& labels, std::string* out) const;

 private:
  std::vector<double> buckets_;
  mutable std::mutex mu_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative
  uint64_t count_ = 0;
  double sum_ = 0.0;
};

struct GaugeSnapshot {
  double running = 0;
  double waiting = 0;
  double kv_cache_usage = 0;  // 0..1
  double kv_cache_slots_used = 0;
  double kv_cache_tokens_held = 0;
};

class Metrics {
 public:
  explicit Metrics(std::string model_name);

  void SetTokenTotals(int64_t prompt, int64_t generation) {
    prompt_tokens_ = prompt;
    generation_tokens_ = generation;
  }
  void AddRequestSuccess(const std::string& finished_reason);
  void SetPreemptions(int64_t total) { preemptions_ = total; }
  void SetPrefixCache(int64_t queries, int64_t hits) {
    prefix_queries_ = queries;
    prefix_hits_ = hits;
  }

  Histogram time_to_first_token{{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
                                 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0}};
  Histogram inter_token_latency{{0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0,
                                 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0}};
  Histogram e2e_request_latency{{0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0,
                                 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0}};
  Histogram request_prompt_tokens{{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000}};
  Histogram request_generation_tokens{
      {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000}};

  std::string Render(const GaugeSnapshot& gauges) const;

 private:
  std::string model_name_;
  std::atomic<int64_t> prompt_tokens_{0};
  std::atomic<int64_t> generation_tokens_{0};
  std::atomic<int64_t> preemptions_{0};
  std::atomic<int64_t> prefix_queries_{0};
  std::atomic<int64_t> prefix_hits_{0};
  std::atomic<int64_t> success_stop_{0};
  std::atomic<int64_t> success_length_{0};
  std::atomic<int64_t> success_abort_{0};
};

// Several models' expositions as one: each family's HELP and TYPE once, followed by every model's
// samples of it (Prometheus refuses a family that appears twice).
std::string MergeExpositions(const std::vector<std::string>& texts);

}  // namespace kiln::server
