// GenerationJob: one chat or completion request in flight. It receives the engine's token
// events (on the engine thread), detokenizes each choice incrementally, applies stop strings,
// and answers the client: a stream of server-sent-event chunks, or one JSON body at the end.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "kiln/engine/engine.h"
#include "kiln/engine/stop_matcher.h"
#include "kiln/server/http_server.h"
#include "kiln/server/metrics.h"
#include "kiln/server/served_model.h"
#include "kiln/text/detokenizer.h"

namespace kiln::server {

enum class JobKind { kChat, kCompletion };

// Turns a finished choice's text into tool calls; empty when the text holds none.
struct ParsedToolCalls {
  std::vector<nlohmann::ordered_json> calls;  // OpenAI tool_call objects
  std::string content;                        // text outside the calls
};
using ToolCallParser = std::function<std::optional<ParsedToolCalls>(const std::string& text)>;

struct JobSettings {
  JobKind kind = JobKind::kChat;
  std::string id;  // "chatcmpl-..." or "cmpl-..."
  int64_t created = 0;
  std::string model;
  bool stream = false;
  bool include_usage = false;
  int32_t n = 1;
  int32_t num_prompts = 1;
  std::optional<int> logprobs;  // top count, when logprobs were asked for
  bool skip_special_tokens = true;
  bool tokens_as_ids = false;  // logprobs name tokens "token_id:<id>"
  std::vector<std::string> stop;
  bool include_stop_str_in_output = false;
  std::vector<std::string> echo_prefixes;  // completions with echo: each prompt's text
  // A scored prompt (SamplingParams::prompt_logprobs): each prompt's token ids, and where the
  // scores go: the echoed prompt's logprobs (completions with echo and logprobs), vLLM's
  // prompt_logprobs field (per choice for completions, top-level for chat), or both.
  std::vector<std::vector<int32_t>> prompt_ids;
  bool echo_logprobs = false;
  bool prompt_logprobs_field = false;
  // Chat with tools: when set, a finished choice's text is parsed for tool calls.
  ToolCallParser tool_call_parser;
  // When true, a choice's text is held back while streaming (tool-call output is sent as
  // tool_calls deltas once complete, not as content).
  bool buffer_content_when_streaming = false;
  // When set, streamed content stops at this text (the start of a tool call); what follows is
  // sent as tool_calls deltas when the choice ends.
  std::string tool_call_trigger;
};

class GenerationJob : public std::enable_shared_from_this<GenerationJob> {
 public:
  GenerationJob(JobSettings settings, ServedModel* model, Metrics* metrics,
                std::shared_ptr<Exchange> exchange);

  // Registers the engine request that serves prompt `prompt_index`, with its prompt length.
  void AddEngineRequest(int32_t prompt_index, uint64_t engine_id, int64_t prompt_tokens);
  // The engine's sink for prompt `prompt_index`.
  void OnEvent(int32_t prompt_index, const engine::TokenEvent& event);
  // Stops every engine request (the client went away).
  void Cancel();
  // Kept until the job has answered: the lease that keeps its model loaded.
  void KeepAlive(std::shared_ptr<void> hold) { hold_ = std::move(hold); }

 private:
  // Sends the start of a streamed reply (headers, then each choice's role). Runs on the engine
  // thread with the first event, so nothing can be written before it.
  void BeginStream();

  struct Choice {
    std::unique_ptr<text::Detokenizer> detokenizer;
    std::unique_ptr<engine::StopMatcher> stop;
    std::unique_ptr<engine::StopMatcher> tool_gate;  // holds content back from the trigger on
    std::string text;
    int64_t tokens = 0;
    bool done = false;
    bool role_sent = false;
    bool started = false;  // its first token (with the prompt's scores) has arrived
    nlohmann::ordered_json prompt_logprobs;  // vLLM's field: [null, {id: {...}}, ...]
    std::string finish_reason;
    nlohmann::ordered_json logprobs;  // chat: {"content": [...]}; completion: token arrays
    int64_t text_offset = 0;
    std::chrono::steady_clock::time_point last_token_time;
  };

  // At a choice's first token: records the prompt's scores and, when streaming a completion
  // with echo or prompt logprobs, sends the chunk that carries them.
  void StartChoice(int32_t index, int32_t prompt_index, const engine::TokenEvent& e);
  void EmitText(int32_t index, const std::string& piece, const nlohmann::ordered_json* logprob);
  void FinishChoice(int32_t index, const std::string& reason, const std::string& error);
  void AppendLogprob(Choice& c, int32_t token, float logprob,
                     const std::vector<engine::TokenLogprob>& top, nlohmann::ordered_json* delta);
  nlohmann::ordered_json ChunkBase() const;
  nlohmann::ordered_json Usage() const;
  void SendChunk(const nlohmann::ordered_json& chunk);
  void Complete();
  void Reply();

  JobSettings settings_;
  ServedModel* model_;
  Metrics* metrics_;
  std::shared_ptr<Exchange> exchange_;
  std::chrono::steady_clock::time_point arrival_;
  bool first_token_seen_ = false;
  bool stream_started_ = false;

  std::shared_ptr<void> hold_;
  std::mutex ids_mu_;  // engine ids are read by Cancel on an I/O thread
  std::vector<uint64_t> engine_ids_;
  std::vector<int64_t> prompt_tokens_;
  std::vector<int64_t> cached_tokens_;

  std::vector<Choice> choices_;
  int32_t remaining_;
  std::string error_;
};

}  // namespace kiln::server
