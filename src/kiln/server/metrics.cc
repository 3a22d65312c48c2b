#include "kiln/server/metrics.h"

#include <charconv>
#include <map>

namespace kiln::server {
namespace {

// Shortest text that reads back as the same double ("0.005", not "0.0050000000000000001").
std::string FormatDouble(double v) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  return ec == std::errc() ? std::string(buf, end) : "NaN";
}

std::string EscapeLabel(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

void Header(std::string* out, const std::string& name, const char* type, const char* help) {
  *out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

}  // namespace

Histogram::Histogram(std::vector<double> buckets)
    : buckets_(std::move(buckets)), counts_(buckets_.size() + 1, 0) {}

void Histogram::Observe(double value) {
  size_t i = 0;
  while (i < buckets_.size() && value > buckets_[i]) ++i;
  std::lock_guard lock(mu_);
  ++counts_[i];
  ++count_;
  sum_ += value;
}

void Histogram::Render(const std::string& name, const std::string& labels, std::string* out) const {
  std::lock_guard lock(mu_);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < buckets_.size(); ++i) {
    cumulative += counts_[i];
    *out += name + "_bucket{" + labels + ",le=\"" + FormatDouble(buckets_[i]) + "\"} " +
            std::to_string(cumulative) + "\n";
  }
  *out += name + "_bucket{" + labels + ",le=\"+Inf\"} " + std::to_string(count_) + "\n";
  *out += name + "_sum{" + labels + "} " + FormatDouble(sum_) + "\n";
  *out += name + "_count{" + labels + "} " + std::to_string(count_) + "\n";
}

Metrics::Metrics(std::string model_name) : model_name_(std::move(model_name)) {}

void Metrics::AddRequestSuccess(const std::string& finished_reason) {
  if (finished_reason == "stop") {
    ++success_stop_;
  } else if (finished_reason == "length") {
    ++success_length_;
  } else {
    ++success_abort_;
  }
}

std::string Metrics::Render(const GaugeSnapshot& gauges) const {
  const std::string labels = "model_name=\"" + EscapeLabel(model_name_) + "\"";
  std::string out;
  auto gauge = [&](const char* name, const char* help, double value) {
    Header(&out, name, "gauge", help);
    out += std::string(name) + "{" + labels + "} " + FormatDouble(value) + "\n";
  };
  auto counter = [&](const char* name, const char* help, int64_t value) {
    Header(&out, name, "counter", help);
    out += std::string(name) + "{" + labels + "} " + std::to_string(value) + "\n";
  };
  gauge("vllm:num_requests_running", "Number of requests in model execution batches.",
        gauges.running);
  gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", gauges.waiting);
  gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.",
        gauges.kv_cache_usage);
  gauge("kiln:kv_cache_slots_used", "Token slots of the KV-cache blocks running requests hold.",
        gauges.kv_cache_slots_used);
  gauge("kiln:kv_cache_tokens_held",
        "Tokens whose keys and values running requests have computed (shared prefix blocks count "
        "once per request).",
        gauges.kv_cache_tokens_held);
  counter("vllm:prompt_tokens_total", "Number of prefill tokens processed.", prompt_tokens_);
  counter("vllm:generation_tokens_total", "Number of generation tokens processed.",
          generation_tokens_);
  counter("vllm:num_preemptions_total", "Cumulative number of preemption from the engine.",
          preemptions_);
  counter("vllm:prefix_cache_queries_total",
          "Prefix cache queries, in terms of number of queried tokens.", prefix_queries_);
  counter("vllm:prefix_cache_hits_total", "Prefix cache hits, in terms of number of cached tokens.",
          prefix_hits_);
  Header(&out, "vllm:request_success_total", "counter",
         "Count of successfully processed requests.");
  out += "vllm:request_success_total{" + labels + ",finished_reason=\"stop\"} " +
         std::to_string(success_stop_) + "\n";
  out += "vllm:request_success_total{" + labels + ",finished_reason=\"length\"} " +
         std::to_string(success_length_) + "\n";
  out += "vllm:request_success_total{" + labels + ",finished_reason=\"abort\"} " +
         std::to_string(success_abort_) + "\n";
  auto histogram = [&](const char* name, const char* help, const Histogram& h) {
    Header(&out, name, "histogram", help);
    h.Render(name, labels, &out);
  };
  histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
            time_to_first_token);
  histogram("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.",
            inter_token_latency);
  histogram("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.",
            e2e_request_latency);
  histogram("vllm:request_prompt_tokens", "Number of prefill tokens processed.",
            request_prompt_tokens);
  histogram("vllm:request_generation_tokens", "Number of generation tokens processed.",
            request_generation_tokens);
  return out;
}

std::string MergeExpositions(const std::vector<std::string>& texts) {
  if (texts.size() == 1) return texts[0];
  std::vector<std::string> order;              // families, first seen first
  std::map<std::string, std::string> headers;  // family -> its HELP and TYPE lines
  std::map<std::string, std::string> samples;  // family -> its sample lines
  for (const std::string& text : texts) {
    std::string family;
    size_t at = 0;
    while (at < text.size()) {
      size_t end = text.find('\n', at);
      if (end == std::string::npos) end = text.size();
      const std::string line = text.substr(at, end - at);
      at = end + 1;
      if (line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0) {
        family = line.substr(7, line.find(' ', 7) - 7);
        if (!headers.count(family)) order.push_back(family);
        std::string& h = headers[family];
        if (h.find(line) == std::string::npos) h += line + "\n";
      } else if (!line.empty()) {
        samples[family] += line + "\n";
      }
    }
  }
  std::string out;
  for (const std::string& family : order) out += headers[family] + samples[family];
  return out;
}

}  // namespace kiln::server
