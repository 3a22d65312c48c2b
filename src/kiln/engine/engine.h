// Engine: the generative engine core shared by every runtime. Requests go in as token ids with
// sampling parameters; token events come out through each request's sink.
//
// Submit and Abort may be called from any thread. Steps run on the engine's own thread (Start)
// or on the caller's (Step, for tests); sinks are called on the stepping thread and must not
// block. A sink that throws fails its own request (an error event follows, once), never the
// engine or other requests. Text (detokenizing, stop strings) is the caller's business: it
// aborts a request whose text has hit a stop string, using the event's request_id.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "kiln/base/status.h"
#include "kiln/engine/block_manager.h"
#include "kiln/engine/executor.h"
#include "kiln/engine/sampler.h"
#include "kiln/engine/sampling_params.h"
#include "kiln/engine/scheduler.h"
#include "kiln/engine/token_constraint.h"

namespace kiln::engine {

enum class FinishReason { kNone, kStop, kLength, kAbort, kError };
// OpenAI's names: "stop", "length"; "abort" and "error" otherwise.
const char* FinishReasonName(FinishReason reason);

struct TokenEvent {
  uint64_t request_id = 0;
  int32_t index = 0;   // which of the request's n completions
  int32_t token = -1;  // -1 when the event only reports the end (abort, error)
  float logprob = 0.0f;
  std::vector<TokenLogprob> top_logprobs;
  FinishReason finish = FinishReason::kNone;
  bool stopped_by_token = false;  // finish kStop came from an end/stop token (this one)
  std::string error;
  int64_t prompt_tokens = 0;
  int64_t cached_prompt_tokens = 0;
  int64_t output_tokens = 0;
  // With params.prompt_logprobs, on each completion's first token: entry i scores prompt token
  // i + 1 (the first prompt token has nothing before it to be scored by).
  std::vector<PromptLogprob> prompt_logprobs;
};
using EventSink = std::function<void(const TokenEvent&)>;

struct EngineConfig {
  SchedulerConfig scheduler;
  bool enable_prefix_caching = false;
  int64_t max_model_len = 2048;
  std::vector<int32_t> eos_token_ids;
  // Requests that may wait for their first step at once; Submit refuses more (Unavailable).
  // 0: no limit.
  int64_t max_waiting_requests = 0;
};

// One request for SubmitAll.
struct Submission {
  std::vector<int32_t> prompt;
  SamplingParams params;
  EventSink sink;
  ConstraintFactory constraint;  // may be empty
};

struct EngineStats {
  int64_t running = 0;
  int64_t waiting = 0;
  double kv_cache_usage = 0.0;
  // Token slots of the KV blocks that running sequences hold (per layer: a block holds one KV
  // cache group's layers), and the tokens whose keys and values those sequences have computed:
  // their ratio is the paged cache's overhead (partly filled last blocks; below 1 where prefix
  // blocks are shared or sliding-window layers have let old blocks go).
  int64_t kv_cache_slots_used = 0;
  int64_t kv_cache_tokens_held = 0;
  int64_t prompt_tokens_total = 0;
  int64_t generation_tokens_total = 0;
  int64_t preemptions_total = 0;
  int64_t prefix_cache_queries_total = 0;
  int64_t prefix_cache_hits_total = 0;
};

class Engine {
 public:
  Engine(const EngineConfig& config, std::unique_ptr<Executor> executor);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Validates and queues a request. Errors (InvalidArgument / OutOfRange) say what is wrong:
  // an empty prompt, a prompt longer than max_model_len (naming both numbers), parameters out
  // of range.
  // `constraint`, when set, makes one TokenConstraint per sequence that limits its tokens.
  Result<uint64_t> Submit(std::vector<int32_t> prompt, const SamplingParams& params, EventSink sink,
                          ConstraintFactory constraint = nullptr);
  // Queues all of them or none: every one is checked, and the waiting limit counts them all,
  // before any is queued. Ids are in the order given.
  Result<std::vector<uint64_t>> SubmitAll(std::vector<Submission> submissions);
  // The checks Submit makes of one request, without queueing it.
  Status Check(const std::vector<int32_t>& prompt, const SamplingParams& params) const;
  // Stops a request (or only its completion `index`); its sequences leave the batch and free
  // their cache at the next step.
  void Abort(uint64_t request_id, int32_t index = -1);

  void Start();  // runs steps on a background thread until Stop or destruction
  void Stop();
  // Runs one step on the calling thread. Returns false when there was nothing to do.
  bool Step();

  EngineStats stats() const;
  const EngineConfig& config() const { return config_; }
  int64_t vocab_size() const { return vocab_size_; }
  // Whether prefix caching is on: asked for (config) and supported (the executor's
  // capabilities).
  bool prefix_caching() const { return prefix_caching_; }

 private:
  struct Request;
  void DrainInbox();
  // Step's parts. Execute runs the executor into logits_ and checks its rows; on failure it
  // fails the step's sequences and returns false.
  bool Execute(const SchedulerStep& step);
  // Scores the prompt tokens chunk `c` covers from its rows, starting at `first_row`.
  void ScorePrompt(const ScheduledChunk& c, size_t first_row);
  // Samples `seq`'s next token from logits row `row`, emits it and finishes the sequence when it
  // ends.
  void SampleNext(Sequence* seq, size_t row);
  void Finish(Sequence* seq, FinishReason reason, const std::string& error = {});
  // Calls the request's sink; if it throws, fails the request (returns false).
  bool Emit(Request* request, const TokenEvent& event);
  void FailRequest(Request* request, const std::string& error);
  void Loop(std::stop_token stop);
  void UpdateStats(int64_t generated, int64_t preempted);

  EngineConfig config_;
  std::unique_ptr<Executor> executor_;
  int64_t vocab_size_;
  ExecutorCapabilities capabilities_;
  bool prefix_caching_;
  BlockManager blocks_;
  Scheduler scheduler_;

  std::mutex inbox_mu_;
  std::condition_variable_any inbox_cv_;
  std::vector<std::unique_ptr<Request>> inbox_;
  std::vector<std::pair<uint64_t, int32_t>> aborts_;
  std::atomic<uint64_t> next_request_id_{1};
  // Requests submitted whose sequences have not been scheduled yet (the waiting limit).
  std::atomic<int64_t> waiting_requests_{0};

  // Owned by the stepping thread.
  std::unordered_map<uint64_t, std::unique_ptr<Request>> requests_;
  std::unordered_map<Sequence*, std::pair<Request*, int32_t>> owners_;
  std::vector<float> logits_;
  std::vector<uint8_t> allowed_;
  uint64_t next_sequence_id_ = 1;

  mutable std::mutex stats_mu_;
  EngineStats stats_;
  std::jthread thread_;
};

}  // namespace kiln::engine
