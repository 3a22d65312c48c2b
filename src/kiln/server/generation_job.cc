#include "kiln/server/generation_job.h"

namespace kiln::server {
namespace {

using ojson = nlohmann::ordered_json;

std::string Dump(const ojson& j) { return j.dump(-1, ' ', false, ojson::error_handler_t::replace); }

ojson ByteList(std::string_view s) {
  ojson out = ojson::array();
  for (unsigned char ch : s) out.push_back(static_cast<int>(ch));
  return out;
}

std::string TokenText(const text::Tokenizer& tok, int32_t id) {
  return tok.Decode(std::span<const int32_t>(&id, 1));
}

// The engine's score of prompt token i (entry i - 1: the first token has none), if there is one.
const engine::PromptLogprob* ScoreOf(const std::vector<engine::PromptLogprob>& scores, size_t i) {
  return i >= 1 && i - 1 < scores.size() ? &scores[i - 1] : nullptr;
}

// vLLM's prompt_logprobs: per prompt token, null for the first, else {id: {logprob, rank,
// decoded_token}} for the token itself and the top alternatives.
ojson PromptLogprobsField(const text::Tokenizer& tok, const std::vector<int32_t>& ids,
                          const std::vector<engine::PromptLogprob>& scores) {
  ojson out = ojson::array();
  for (size_t i = 0; i < ids.size(); ++i) {
    const engine::PromptLogprob* s = ScoreOf(scores, i);
    if (!s) {
      out.push_back(nullptr);
      continue;
    }
    ojson entry = ojson::object();
    entry[std::to_string(s->token)] = {
        {"logprob", s->logprob}, {"rank", s->rank}, {"decoded_token", TokenText(tok, s->token)}};
    for (size_t r = 0; r < s->top.size(); ++r) {
      const std::string key = std::to_string(s->top[r].token);
      if (entry.contains(key)) continue;
      entry[key] = {{"logprob", s->top[r].logprob},
                    {"rank", r + 1},
                    {"decoded_token", TokenText(tok, s->top[r].token)}};
    }
    out.push_back(entry);
  }
  return out;
}

// The echoed prompt's part of a completion's logprobs, in OpenAI's shape: per prompt token its
// text, logprob (null for the first), top alternatives with the token itself (as vLLM includes
// it), and offset into the echoed text.
ojson EchoedPromptLogprobs(const text::Tokenizer& tok, const std::vector<int32_t>& ids,
                           const std::vector<engine::PromptLogprob>& scores) {
  ojson out = {{"tokens", ojson::array()},
               {"token_logprobs", ojson::array()},
               {"top_logprobs", ojson::array()},
               {"text_offset", ojson::array()}};
  text::Detokenizer detok(tok, /*skip_special_tokens=*/false);
  int64_t offset = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    const engine::PromptLogprob* s = ScoreOf(scores, i);
    ojson tops = nullptr;
    if (s) {
      tops = ojson::object();
      for (const auto& t : s->top) tops[TokenText(tok, t.token)] = t.logprob;
      tops[TokenText(tok, s->token)] = s->logprob;
    }
    out["tokens"].push_back(TokenText(tok, ids[i]));
    out["token_logprobs"].push_back(s ? ojson(s->logprob) : ojson(nullptr));
    out["top_logprobs"].push_back(tops);
    out["text_offset"].push_back(offset);
    offset += static_cast<int64_t>(detok.Push(ids[i]).size());
  }
  return out;
}

}  // namespace

GenerationJob::GenerationJob(JobSettings settings, ServedModel* model, Metrics* metrics,
                             std::shared_ptr<Exchange> exchange)
    : settings_(std::move(settings)),
      model_(model),
      metrics_(metrics),
      exchange_(std::move(exchange)),
      arrival_(std::chrono::steady_clock::now()),
      engine_ids_(settings_.num_prompts, 0),
      prompt_tokens_(settings_.num_prompts, 0),
      cached_tokens_(settings_.num_prompts, 0),
      choices_(static_cast<size_t>(settings_.num_prompts) * settings_.n),
      remaining_(settings_.num_prompts * settings_.n) {
  for (Choice& c : choices_) {
    c.detokenizer =
        std::make_unique<text::Detokenizer>(model_->tokenizer(), settings_.skip_special_tokens);
    c.stop =
        std::make_unique<engine::StopMatcher>(settings_.stop, settings_.include_stop_str_in_output);
    if (!settings_.tool_call_trigger.empty()) {
      c.tool_gate = std::make_unique<engine::StopMatcher>(
          std::vector<std::string>{settings_.tool_call_trigger}, false);
    }
    if (settings_.kind == JobKind::kChat) {
      c.logprobs = {{"content", ojson::array()}};
    } else {
      c.logprobs = {{"tokens", ojson::array()},
                    {"token_logprobs", ojson::array()},
                    {"top_logprobs", ojson::array()},
                    {"text_offset", ojson::array()}};
    }
  }
  if (!settings_.echo_prefixes.empty()) {
    for (int32_t p = 0; p < settings_.num_prompts; ++p) {
      for (int32_t j = 0; j < settings_.n; ++j) {
        Choice& c = choices_[p * settings_.n + j];
        c.text = settings_.echo_prefixes[p];
        c.text_offset = static_cast<int64_t>(c.text.size());
      }
    }
  }
}

void GenerationJob::AddEngineRequest(int32_t prompt_index, uint64_t engine_id,
                                     int64_t prompt_tokens) {
  std::lock_guard lock(ids_mu_);
  engine_ids_[prompt_index] = engine_id;
  prompt_tokens_[prompt_index] = prompt_tokens;
}

void GenerationJob::Cancel() {
  std::vector<uint64_t> ids;
  std::shared_ptr<void> hold;  // the model stays loaded while its requests are aborted
  {
    std::lock_guard lock(ids_mu_);
    ids = engine_ids_;
    hold = hold_;
  }
  for (uint64_t id : ids) {
    if (id != 0) model_->engine().Abort(id);
  }
}

void GenerationJob::BeginStream() {
  exchange_->StartStream(200, "text/event-stream; charset=utf-8");
  if (settings_.kind == JobKind::kChat) {
    // The role comes first, once per choice, as OpenAI sends it.
    for (size_t i = 0; i < choices_.size(); ++i) {
      ojson chunk = ChunkBase();
      chunk["choices"] = ojson::array({{{"index", i},
                                        {"delta", {{"role", "assistant"}, {"content", ""}}},
                                        {"logprobs", nullptr},
                                        {"finish_reason", nullptr}}});
      SendChunk(chunk);
      choices_[i].role_sent = true;
    }
  }
}

ojson GenerationJob::ChunkBase() const {
  ojson chunk = {
      {"id", settings_.id},
      {"object", settings_.kind == JobKind::kChat ? "chat.completion.chunk" : "text_completion"},
      {"created", settings_.created},
      {"model", settings_.model}};
  return chunk;
}

void GenerationJob::SendChunk(const ojson& chunk) {
  ojson c = chunk;
  if (settings_.include_usage && !c.contains("usage")) c["usage"] = nullptr;
  exchange_->Write("data: " + Dump(c) + "\n\n");
}

ojson GenerationJob::Usage() const {
  int64_t prompt = 0, cached = 0, completion = 0;
  for (int32_t p = 0; p < settings_.num_prompts; ++p) {
    prompt += prompt_tokens_[p];
    cached += cached_tokens_[p];
  }
  for (const Choice& c : choices_) completion += c.tokens;
  ojson usage = {{"prompt_tokens", prompt},
                 {"completion_tokens", completion},
                 {"total_tokens", prompt + completion}};
  if (cached > 0) usage["prompt_tokens_details"] = {{"cached_tokens", cached}};
  return usage;
}

void GenerationJob::AppendLogprob(Choice& c, int32_t token, float logprob,
                                  const std::vector<engine::TokenLogprob>& top, ojson* delta) {
  const text::Tokenizer& tok = model_->tokenizer();
  auto text_of = [&](int32_t id) {
    return settings_.tokens_as_ids ? "token_id:" + std::to_string(id) : TokenText(tok, id);
  };
  // `bytes` are the token's own bytes, so a client can join the pieces of a character that
  // spans tokens (the text shows such a piece as U+FFFD).
  const text::TokenBytes& raw = *model_->token_bytes();
  auto bytes_of = [&raw](int32_t id, const std::string& text) {
    return ByteList(id >= 0 && static_cast<size_t>(id) < raw.size() ? raw.bytes[id] : text);
  };
  std::string token_text = text_of(token);
  if (settings_.kind == JobKind::kChat) {
    ojson entry = {
        {"token", token_text}, {"logprob", logprob}, {"bytes", bytes_of(token, token_text)}};
    ojson tops = ojson::array();
    for (const auto& t : top) {
      std::string s = text_of(t.token);
      tops.push_back({{"token", s}, {"logprob", t.logprob}, {"bytes", bytes_of(t.token, s)}});
    }
    entry["top_logprobs"] = tops;
    c.logprobs["content"].push_back(entry);
    if (delta) *delta = {{"content", ojson::array({entry})}};
  } else {
    ojson tops = ojson::object();
    for (const auto& t : top) tops[text_of(t.token)] = t.logprob;
    c.logprobs["tokens"].push_back(token_text);
    c.logprobs["token_logprobs"].push_back(logprob);
    c.logprobs["top_logprobs"].push_back(tops);
    c.logprobs["text_offset"].push_back(c.text_offset);
    c.text_offset += static_cast<int64_t>(token_text.size());
    if (delta) {
      *delta = {{"tokens", {token_text}},
                {"token_logprobs", {logprob}},
                {"top_logprobs", {tops}},
                {"text_offset", {c.text_offset - static_cast<int64_t>(token_text.size())}}};
    }
  }
}

void GenerationJob::StartChoice(int32_t index, int32_t prompt_index, const engine::TokenEvent& e) {
  Choice& c = choices_[index];
  c.started = true;
  ojson echo_logprobs;  // the echoed prompt's part of a completion's logprobs
  if (prompt_index < static_cast<int32_t>(settings_.prompt_ids.size())) {
    const std::vector<int32_t>& ids = settings_.prompt_ids[prompt_index];
    if (settings_.prompt_logprobs_field) {
      c.prompt_logprobs = PromptLogprobsField(model_->tokenizer(), ids, e.prompt_logprobs);
    }
    if (settings_.echo_logprobs) {
      echo_logprobs = EchoedPromptLogprobs(model_->tokenizer(), ids, e.prompt_logprobs);
      for (const char* key : {"tokens", "token_logprobs", "top_logprobs", "text_offset"}) {
        for (const ojson& v : echo_logprobs[key]) c.logprobs[key].push_back(v);
      }
    }
  }
  if (!settings_.stream || settings_.kind != JobKind::kCompletion) return;
  const bool echo = !settings_.echo_prefixes.empty();
  if (!echo && c.prompt_logprobs.is_null()) return;
  // The echoed prompt (and its scores) comes first, as its own chunk.
  ojson chunk = ChunkBase();
  ojson choice = {{"index", index},
                  {"text", echo ? settings_.echo_prefixes[prompt_index] : std::string()},
                  {"logprobs", echo_logprobs},
                  {"finish_reason", nullptr}};
  if (!c.prompt_logprobs.is_null()) choice["prompt_logprobs"] = c.prompt_logprobs;
  chunk["choices"] = ojson::array({choice});
  SendChunk(chunk);
}

void GenerationJob::EmitText(int32_t index, const std::string& piece, const ojson* logprob) {
  Choice& c = choices_[index];
  c.text += piece;
  if (!settings_.stream || settings_.buffer_content_when_streaming) return;
  std::string shown = c.tool_gate ? c.tool_gate->Push(piece) : piece;
  if (shown.empty() && logprob == nullptr) return;
  ojson chunk = ChunkBase();
  ojson choice = {{"index", index}};
  if (settings_.kind == JobKind::kChat) {
    choice["delta"] = {{"content", shown}};
    choice["logprobs"] = logprob ? *logprob : ojson(nullptr);
  } else {
    choice["text"] = shown;
    choice["logprobs"] = logprob ? *logprob : ojson(nullptr);
  }
  choice["finish_reason"] = nullptr;
  chunk["choices"] = ojson::array({choice});
  SendChunk(chunk);
}

void GenerationJob::OnEvent(int32_t prompt_index, const engine::TokenEvent& e) {
  if (settings_.stream && !stream_started_) {
    stream_started_ = true;
    BeginStream();
  }
  const int32_t index = prompt_index * settings_.n + e.index;
  Choice& c = choices_[index];
  if (c.done) return;  // ended by a stop string; the engine's abort event follows
  auto now = std::chrono::steady_clock::now();
  if (e.prompt_tokens > 0) {
    std::lock_guard lock(ids_mu_);
    prompt_tokens_[prompt_index] = e.prompt_tokens;
    cached_tokens_[prompt_index] = e.cached_prompt_tokens;
  }
  if (e.token >= 0) {
    if (!first_token_seen_) {
      first_token_seen_ = true;
      metrics_->time_to_first_token.Observe(std::chrono::duration<double>(now - arrival_).count());
    } else if (c.tokens > 0) {
      metrics_->inter_token_latency.Observe(
          std::chrono::duration<double>(now - c.last_token_time).count());
    }
    c.last_token_time = now;
    if (!c.started) StartChoice(index, prompt_index, e);
    ++c.tokens;
    const bool hidden = e.finish == engine::FinishReason::kStop && e.stopped_by_token &&
                        !settings_.include_stop_str_in_output;
    ojson logprob_delta;
    bool has_logprob = false;
    if (settings_.logprobs && !hidden) {
      AppendLogprob(c, e.token, e.logprob, e.top_logprobs, &logprob_delta);
      has_logprob = true;
    }
    std::string piece = hidden ? std::string() : c.detokenizer->Push(e.token);
    piece = c.stop->Push(piece);
    EmitText(index, piece, has_logprob ? &logprob_delta : nullptr);
    if (c.stop->stopped()) {
      // The event's own id: the first event can arrive before AddEngineRequest has run.
      model_->engine().Abort(e.request_id, e.index);
      FinishChoice(index, "stop", "");
      return;
    }
  }
  if (e.finish == engine::FinishReason::kNone) return;
  if (e.finish == engine::FinishReason::kAbort) {
    FinishChoice(index, "abort", "");
    return;
  }
  std::string rest = c.stop->Push(c.detokenizer->Flush());
  if (!c.stop->stopped()) rest += c.stop->Flush();
  EmitText(index, rest, nullptr);
  if (e.finish == engine::FinishReason::kError) {
    FinishChoice(index, "error", e.error);
  } else {
    FinishChoice(index,
                 c.stop->stopped() || e.finish == engine::FinishReason::kStop ? "stop" : "length",
                 "");
  }
}

void GenerationJob::FinishChoice(int32_t index, const std::string& reason,
                                 const std::string& error) {
  Choice& c = choices_[index];
  if (c.done) return;
  c.done = true;
  c.finish_reason = reason;
  if (!error.empty() && error_.empty()) error_ = error;
  metrics_->request_generation_tokens.Observe(static_cast<double>(c.tokens));
  if (settings_.stream && reason != "abort" && reason != "error") {
    std::optional<ParsedToolCalls> calls;
    if (settings_.tool_call_parser) calls = settings_.tool_call_parser(c.text);
    if (calls && !calls->calls.empty()) c.finish_reason = "tool_calls";
    ojson chunk = ChunkBase();
    if (settings_.kind == JobKind::kChat && c.tool_gate) {
      // Content held back as a possible trigger that never completed is content after all.
      std::string held = c.tool_gate->Flush();
      if (calls && !calls->calls.empty()) {
        ojson deltas = ojson::array();
        for (size_t k = 0; k < calls->calls.size(); ++k) {
          ojson call = calls->calls[k];
          call["index"] = k;
          deltas.push_back(call);
        }
        ojson body = chunk;
        body["choices"] = ojson::array({{{"index", index},
                                         {"delta", {{"tool_calls", deltas}}},
                                         {"logprobs", nullptr},
                                         {"finish_reason", nullptr}}});
        SendChunk(body);
      } else if (!held.empty()) {
        ojson body = chunk;
        body["choices"] = ojson::array({{{"index", index},
                                         {"delta", {{"content", held}}},
                                         {"logprobs", nullptr},
                                         {"finish_reason", nullptr}}});
        SendChunk(body);
      }
    }
    if (settings_.kind == JobKind::kChat) {
      if (settings_.buffer_content_when_streaming) {
        ojson delta = ojson::object();
        if (calls && !calls->calls.empty()) {
          ojson deltas = ojson::array();
          for (size_t k = 0; k < calls->calls.size(); ++k) {
            ojson call = calls->calls[k];
            call["index"] = k;
            deltas.push_back(call);
          }
          if (!calls->content.empty()) delta["content"] = calls->content;
          delta["tool_calls"] = deltas;
        } else {
          delta["content"] = c.text;
        }
        ojson body = chunk;
        body["choices"] = ojson::array({{{"index", index},
                                         {"delta", delta},
                                         {"logprobs", nullptr},
                                         {"finish_reason", nullptr}}});
        SendChunk(body);
      }
      chunk["choices"] = ojson::array({{{"index", index},
                                        {"delta", ojson::object()},
                                        {"logprobs", nullptr},
                                        {"finish_reason", c.finish_reason}}});
    } else {
      chunk["choices"] = ojson::array({{{"index", index},
                                        {"text", ""},
                                        {"logprobs", nullptr},
                                        {"finish_reason", c.finish_reason}}});
    }
    SendChunk(chunk);
  }
  if (reason != "error") metrics_->AddRequestSuccess(reason);  // an abort counts, as in vLLM
  if (--remaining_ == 0) Complete();
}

void GenerationJob::Complete() {
  Reply();
  // Answered: the model may be unloaded now. Nothing here touches it again (Cancel finds no ids).
  std::shared_ptr<void> hold;
  std::lock_guard lock(ids_mu_);
  engine_ids_.clear();
  hold.swap(hold_);
}

void GenerationJob::Reply() {
  auto now = std::chrono::steady_clock::now();
  metrics_->e2e_request_latency.Observe(std::chrono::duration<double>(now - arrival_).count());
  int64_t prompt = 0;
  for (int64_t p : prompt_tokens_) prompt += p;
  metrics_->request_prompt_tokens.Observe(static_cast<double>(prompt));
  if (exchange_->cancelled()) return;
  if (settings_.stream) {
    if (!error_.empty()) {
      exchange_->Write("data: " + ErrorBody(error_, "server_error", 500) + "\n\n");
    }
    if (settings_.include_usage) {
      ojson chunk = ChunkBase();
      chunk["choices"] = ojson::array();
      chunk["usage"] = Usage();
      exchange_->Write("data: " + Dump(chunk) + "\n\n");
    }
    exchange_->Write("data: [DONE]\n\n");
    exchange_->End();
    return;
  }
  if (!error_.empty()) {
    exchange_->Respond({500, "application/json", ErrorBody(error_, "server_error", 500), {}});
    return;
  }
  ojson body = {
      {"id", settings_.id},
      {"object", settings_.kind == JobKind::kChat ? "chat.completion" : "text_completion"},
      {"created", settings_.created},
      {"model", settings_.model}};
  ojson choices = ojson::array();
  for (size_t i = 0; i < choices_.size(); ++i) {
    Choice& c = choices_[i];
    ojson choice = {{"index", i}};
    if (settings_.kind == JobKind::kChat) {
      ojson message = {{"role", "assistant"}, {"content", c.text}};
      if (settings_.tool_call_parser) {
        if (auto calls = settings_.tool_call_parser(c.text); calls && !calls->calls.empty()) {
          message["content"] = calls->content.empty() ? ojson(nullptr) : ojson(calls->content);
          message["tool_calls"] = calls->calls;
          c.finish_reason = "tool_calls";
        }
      }
      choice["message"] = message;
    } else {
      choice["text"] = c.text;
    }
    choice["logprobs"] = settings_.logprobs ? c.logprobs : ojson(nullptr);
    choice["finish_reason"] = c.finish_reason;
    if (settings_.kind == JobKind::kCompletion && settings_.prompt_logprobs_field) {
      choice["prompt_logprobs"] = c.prompt_logprobs;
    }
    choices.push_back(choice);
  }
  body["choices"] = choices;
  if (settings_.kind == JobKind::kChat && settings_.prompt_logprobs_field) {
    body["prompt_logprobs"] = choices_.empty() ? ojson(nullptr) : choices_[0].prompt_logprobs;
  }
  body["usage"] = Usage();
  exchange_->Respond({200, "application/json", Dump(body), {}});
}

}  // namespace kiln::server
