#include "kiln/server/metrics.h"

#include <gtest/gtest.h>

namespace kiln::server {
namespace {

TEST(MetricsTest, RendersVllmNamesLabelsAndCumulativeBuckets) {
  Metrics m("smollm2");
  m.SetTokenTotals(12, 30);
  m.AddRequestSuccess("stop");
  m.time_to_first_token.Observe(0.003);
  m.time_to_first_token.Observe(0.05);
  std::string text = m.Render({2, 1, 0.25});
  EXPECT_NE(text.find("# TYPE vllm:num_requests_running gauge\n"
                      "vllm:num_requests_running{model_name=\"smollm2\"} 2\n"),
            std::string::npos);
  EXPECT_NE(text.find("vllm:kv_cache_usage_perc{model_name=\"smollm2\"} 0.25\n"),
            std::string::npos);
  EXPECT_NE(text.find("vllm:prompt_tokens_total{model_name=\"smollm2\"} 12\n"), std::string::npos);
  EXPECT_NE(text.find("vllm:generation_tokens_total{model_name=\"smollm2\"} 30\n"),
            std::string::npos);
  EXPECT_NE(
      text.find("vllm:request_success_total{model_name=\"smollm2\",finished_reason=\"stop\"} 1"),
      std::string::npos);
  EXPECT_NE(
      text.find("vllm:time_to_first_token_seconds_bucket{model_name=\"smollm2\",le=\"0.001\"} 0\n"),
      std::string::npos);
  EXPECT_NE(
      text.find("vllm:time_to_first_token_seconds_bucket{model_name=\"smollm2\",le=\"0.005\"} 1\n"),
      std::string::npos);
  EXPECT_NE(
      text.find("vllm:time_to_first_token_seconds_bucket{model_name=\"smollm2\",le=\"0.06\"} 2\n"),
      std::string::npos);
  EXPECT_NE(text.find("vllm:time_to_first_token_seconds_count{model_name=\"smollm2\"} 2\n"),
            std::string::npos);
  EXPECT_NE(text.find("le=\"+Inf\"} 2\n"), std::string::npos);
}

TEST(MetricsTest, EscapesLabelValues) {
  Metrics m("a\"b\\c");
  EXPECT_NE(m.Render({}).find("model_name=\"a\\\"b\\\\c\""), std::string::npos);
}

}  // namespace
}  // namespace kiln::server
