#include "kiln/engine/engine.h"

#include <algorithm>
#include <random>

#include "kiln/base/log.h"

namespace kiln::engine {

const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kNone:
      return "";
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kAbort:
      return "abort";
    case FinishReason::kError:
      return "error";
  }
  return "";
}

struct Engine::Request {
  uint64_t id = 0;
  SamplingParams params;
  EventSink sink;
  int64_t max_total_tokens = 0;  // prompt + most generated tokens allowed
  std::vector<std::unique_ptr<Sequence>> seqs;
  std::vector<std::unique_ptr<SequenceSampler>> samplers;
  std::vector<std::unique_ptr<TokenConstraint>> constraints;  // empty when unconstrained
  std::vector<std::vector<PromptLogprob>> prompt_logprobs;    // per completion, when asked for
  int32_t unfinished = 0;
  bool started = false;  // a sequence has been scheduled (it no longer counts as waiting)
  bool failed = false;   // its sink threw: it is being failed, and gets no more token events
};

Engine::Engine(const EngineConfig& config, std::unique_ptr<Executor> executor)
    : config_(config),
      executor_(std::move(executor)),
      vocab_size_(executor_->vocab_size()),
      capabilities_(executor_->capabilities()),
      prefix_caching_(config.enable_prefix_caching && capabilities_.prefix_caching),
      blocks_(executor_->kv_geometry().num_blocks, executor_->kv_geometry().block_size,
              prefix_caching_ && capabilities_.paged_kv_cache,
              executor_->kv_geometry().group_windows),
      scheduler_(config.scheduler, &blocks_) {
  if (prefix_caching_ && !capabilities_.paged_kv_cache) {
    scheduler_.SetPrefixSource(
        [this](const Sequence& seq) { return executor_->AdmitWithCachedPrefix(seq); });
  }
}

Engine::~Engine() { Stop(); }

Status Engine::Check(const std::vector<int32_t>& prompt, const SamplingParams& params) const {
  if (prompt.empty()) return Status::InvalidArgument("the prompt is empty");
  const int64_t len = static_cast<int64_t>(prompt.size());
  if (len >= config_.max_model_len) {
    return Status::InvalidArgument("this model's maximum context length is " +
                                   std::to_string(config_.max_model_len) +
                                   " tokens, but the prompt has " + std::to_string(len) +
                                   " tokens (at least one token must be left for the completion)");
  }
  for (int32_t t : prompt) {
    if (t < 0 || t >= vocab_size_) {
      return Status::InvalidArgument("prompt token " + std::to_string(t) +
                                     " is outside the vocabulary of " +
                                     std::to_string(vocab_size_));
    }
  }
  KILN_RETURN_IF_ERROR(params.Validate(vocab_size_));
  if (params.max_tokens && len + *params.max_tokens > config_.max_model_len) {
    return Status::InvalidArgument("max_tokens is too large: the prompt has " +
                                   std::to_string(len) + " tokens and " +
                                   std::to_string(*params.max_tokens) +
                                   " more would exceed this model's maximum context "
                                   "length of " +
                                   std::to_string(config_.max_model_len) + " tokens");
  }
  const int64_t max_total = params.max_tokens ? len + *params.max_tokens : config_.max_model_len;
  if (blocks_.BlocksForSequence(max_total) > blocks_.num_blocks()) {
    // Never admissible: even alone it would exhaust the cache. (The planner avoids this.)
    return Status::OutOfRange("the request needs " + std::to_string(max_total) +
                              " tokens of KV cache; the cache holds " +
                              std::to_string(static_cast<int64_t>(blocks_.num_blocks()) *
                                             blocks_.block_size() / blocks_.num_groups()));
  }
  return Status::Ok();
}

Result<uint64_t> Engine::Submit(std::vector<int32_t> prompt, const SamplingParams& params,
                                EventSink sink, ConstraintFactory constraint) {
  std::vector<Submission> one;
  one.push_back({std::move(prompt), params, std::move(sink), std::move(constraint)});
  KILN_ASSIGN_OR_RETURN(std::vector<uint64_t> ids, SubmitAll(std::move(one)));
  return ids[0];
}

Result<std::vector<uint64_t>> Engine::SubmitAll(std::vector<Submission> submissions) {
  for (size_t i = 0; i < submissions.size(); ++i) {
    Status s = Check(submissions[i].prompt, submissions[i].params);
    if (!s.ok()) {
      return submissions.size() == 1 ? s : s.WithContext("prompt " + std::to_string(i));
    }
  }
  const int64_t count = static_cast<int64_t>(submissions.size());
  if (config_.max_waiting_requests > 0) {
    int64_t waiting = waiting_requests_.load();
    do {
      if (waiting + count > config_.max_waiting_requests) {
        return Status::Unavailable("the server is busy: " + std::to_string(waiting) +
                                   " requests are waiting (at most " +
                                   std::to_string(config_.max_waiting_requests) + "); retry later");
      }
    } while (!waiting_requests_.compare_exchange_weak(waiting, waiting + count));
  } else {
    waiting_requests_ += count;
  }

  std::vector<std::unique_ptr<Request>> built;
  std::vector<uint64_t> ids;
  std::random_device entropy;
  for (Submission& sub : submissions) {
    const SamplingParams& params = sub.params;
    const int64_t len = static_cast<int64_t>(sub.prompt.size());
    auto request = std::make_unique<Request>();
    request->id = next_request_id_.fetch_add(1);
    request->params = params;
    request->sink = std::move(sub.sink);
    request->max_total_tokens =
        params.max_tokens ? len + *params.max_tokens : config_.max_model_len;
    for (int32_t i = 0; i < params.n; ++i) {
      auto seq = std::make_unique<Sequence>();
      seq->tokens = sub.prompt;
      seq->num_prompt_tokens = len;
      seq->needs_prompt_logits = params.prompt_logprobs.has_value();
      SamplingParams p = params;
      if (p.seed) p.seed = *p.seed + static_cast<uint64_t>(i);
      std::vector<int32_t> stop_ids;
      if (!params.ignore_eos) stop_ids = config_.eos_token_ids;
      auto sampler = std::make_unique<SequenceSampler>(
          p, stop_ids, (static_cast<uint64_t>(entropy()) << 32) | entropy());
      sampler->SetPrompt(sub.prompt);
      request->seqs.push_back(std::move(seq));
      request->samplers.push_back(std::move(sampler));
      if (sub.constraint) request->constraints.push_back(sub.constraint());
    }
    if (params.prompt_logprobs) request->prompt_logprobs.resize(params.n);
    request->unfinished = params.n;
    ids.push_back(request->id);
    built.push_back(std::move(request));
  }
  {
    std::lock_guard lock(inbox_mu_);
    for (auto& request : built) inbox_.push_back(std::move(request));
  }
  inbox_cv_.notify_one();
  return ids;
}

void Engine::Abort(uint64_t request_id, int32_t index) {
  {
    std::lock_guard lock(inbox_mu_);
    aborts_.emplace_back(request_id, index);
  }
  inbox_cv_.notify_one();
}

void Engine::DrainInbox() {
  std::vector<std::unique_ptr<Request>> incoming;
  std::vector<std::pair<uint64_t, int32_t>> aborts;
  {
    std::lock_guard lock(inbox_mu_);
    incoming.swap(inbox_);
    aborts.swap(aborts_);
  }
  for (auto& request : incoming) {
    Request* r = request.get();
    for (int32_t i = 0; i < static_cast<int32_t>(r->seqs.size()); ++i) {
      Sequence* seq = r->seqs[i].get();
      seq->id = next_sequence_id_++;
      owners_[seq] = {r, i};
      scheduler_.Add(seq);
    }
    {
      std::lock_guard lock(stats_mu_);
      stats_.prompt_tokens_total += r->seqs[0]->num_prompt_tokens;
    }
    requests_.emplace(r->id, std::move(request));
  }
  for (auto [id, index] : aborts) {
    auto it = requests_.find(id);
    if (it == requests_.end()) continue;  // finished already
    Request* r = it->second.get();
    std::vector<Sequence*> targets;
    for (int32_t i = 0; i < static_cast<int32_t>(r->seqs.size()); ++i) {
      if ((index < 0 || index == i) && r->seqs[i]->state != SequenceState::kFinished) {
        targets.push_back(r->seqs[i].get());
      }
    }
    for (Sequence* seq : targets) Finish(seq, FinishReason::kAbort);  // may free `r`
  }
}

void Engine::Finish(Sequence* seq, FinishReason reason, const std::string& error) {
  auto [request, index] = owners_.at(seq);
  executor_->Release(*seq);
  scheduler_.Remove(seq);
  if (reason == FinishReason::kAbort || reason == FinishReason::kError) {
    TokenEvent event;
    event.request_id = request->id;
    event.index = index;
    event.finish = reason;
    event.error = error;
    event.prompt_tokens = seq->num_prompt_tokens;
    event.cached_prompt_tokens = seq->num_cached_prompt_tokens;
    event.output_tokens = seq->num_output_tokens();
    try {
      request->sink(event);
    } catch (const std::exception& e) {
      LogError("request " + std::to_string(request->id) + ": its end event failed: " + e.what());
    } catch (...) {
      LogError("request " + std::to_string(request->id) + ": its end event failed");
    }
  }
  owners_.erase(seq);
  if (--request->unfinished == 0) {
    if (!request->started) --waiting_requests_;
    requests_.erase(request->id);
  }
}

bool Engine::Emit(Request* request, const TokenEvent& event) {
  std::string error;
  try {
    request->sink(event);
    return true;
  } catch (const std::exception& e) {
    error = e.what();
  } catch (...) {
    error = "unknown exception";
  }
  LogError("request " + std::to_string(request->id) + ": its event handler failed: " + error);
  FailRequest(request, "internal error: " + error);
  return false;
}

void Engine::FailRequest(Request* request, const std::string& error) {
  if (request->failed) return;
  request->failed = true;
  std::vector<Sequence*> targets;
  for (auto& seq : request->seqs) {
    if (seq->state != SequenceState::kFinished && owners_.count(seq.get()) != 0) {
      targets.push_back(seq.get());
    }
  }
  for (Sequence* seq : targets) Finish(seq, FinishReason::kError, error);  // may free `request`
}

// One step: schedule, run the executor, then score prompts and sample a token for each
// sequence whose chunk reached its end.
bool Engine::Step() {
  DrainInbox();
  SchedulerStep step = scheduler_.Schedule();
  for (Sequence* seq : step.preempted) executor_->Release(*seq);
  if (step.empty()) {
    UpdateStats(0, 0);  // aborts may have emptied the batch
    return false;
  }
  if (!Execute(step)) return true;
  scheduler_.Complete(step);
  for (const ScheduledChunk& c : step.chunks) {
    Request* request = owners_.at(c.seq).first;
    if (!request->started) {
      request->started = true;
      --waiting_requests_;
    }
  }
  int64_t generated = 0;
  size_t row = 0;  // the first logits row of the chunk at hand
  for (const ScheduledChunk& c : step.chunks) {
    const size_t rows = c.all_logits ? static_cast<size_t>(c.count) : (c.samples ? 1 : 0);
    // A sink that threw has failed its request: its other sequences are gone.
    if (owners_.count(c.seq) != 0) {
      if (c.all_logits) ScorePrompt(c, row);
      if (c.samples) {
        SampleNext(c.seq, row + rows - 1);
        ++generated;
      }
    }
    row += rows;
  }
  UpdateStats(generated, static_cast<int64_t>(step.preempted.size()));
  return true;
}

bool Engine::Execute(const SchedulerStep& step) {
  logits_.clear();
  Status status = executor_->Execute(step, &logits_);
  size_t rows = 0;
  for (const ScheduledChunk& c : step.chunks) {
    rows += c.all_logits ? static_cast<size_t>(c.count) : (c.samples ? 1 : 0);
  }
  if (status.ok() && logits_.size() != rows * static_cast<size_t>(vocab_size_)) {
    status =
        Status::Internal("the executor returned " + std::to_string(logits_.size() / vocab_size_) +
                         " rows of logits for a step that needs " + std::to_string(rows));
  }
  if (status.ok()) return true;
  // Finish may free a request and its sequences: look them up, never dereference stale ones.
  for (const ScheduledChunk& c : step.chunks) {
    if (owners_.count(c.seq) != 0) Finish(c.seq, FinishReason::kError, status.message());
  }
  return false;
}

void Engine::ScorePrompt(const ScheduledChunk& c, size_t first_row) {
  // Logits at position p score prompt token p + 1. A sequence recomputed after preemption
  // passes its positions again; each is scored once.
  auto [request, index] = owners_.at(c.seq);
  std::vector<PromptLogprob>& scored = request->prompt_logprobs[index];
  for (int64_t k = 0; k < c.count; ++k) {
    const int64_t p = c.start + k;
    if (p + 1 >= c.seq->num_prompt_tokens || p != static_cast<int64_t>(scored.size())) continue;
    scored.push_back(ScorePromptToken(
        std::span<const float>(logits_.data() + (first_row + k) * vocab_size_, vocab_size_),
        c.seq->tokens[p + 1], *request->params.prompt_logprobs));
  }
}

void Engine::SampleNext(Sequence* seq, size_t row) {
  std::span<float> logits(logits_.data() + row * vocab_size_, vocab_size_);
  auto [request, index] = owners_.at(seq);
  SequenceSampler& sampler = *request->samplers[index];
  TokenConstraint* constraint =
      request->constraints.empty() ? nullptr : request->constraints[index].get();
  std::span<const uint8_t> allowed;
  if (constraint != nullptr) {
    allowed_.assign(static_cast<size_t>(vocab_size_), 0);
    const int64_t tokens_left =
        std::min(request->max_total_tokens, config_.max_model_len) - seq->num_tokens();
    constraint->FillAllowed(allowed_, tokens_left);
    allowed = allowed_;
  }
  SampledToken sampled = sampler.Sample(logits, allowed);
  sampler.Accept(sampled.token);
  if (constraint != nullptr) constraint->Accept(sampled.token);
  seq->tokens.push_back(sampled.token);

  const SamplingParams& p = request->params;
  TokenEvent event;
  event.request_id = request->id;
  event.index = index;
  event.token = sampled.token;
  event.logprob = sampled.logprob;
  event.top_logprobs = std::move(sampled.top);
  bool is_stop_token =
      std::find(p.stop_token_ids.begin(), p.stop_token_ids.end(), sampled.token) !=
          p.stop_token_ids.end() ||
      (!p.ignore_eos && std::find(config_.eos_token_ids.begin(), config_.eos_token_ids.end(),
                                  sampled.token) != config_.eos_token_ids.end());
  if (is_stop_token && seq->num_output_tokens() > p.min_tokens - 1) {
    event.finish = FinishReason::kStop;
    event.stopped_by_token = true;
  } else if (seq->num_tokens() >= request->max_total_tokens ||
             seq->num_tokens() >= config_.max_model_len) {
    event.finish = FinishReason::kLength;
  }
  event.prompt_tokens = seq->num_prompt_tokens;
  event.cached_prompt_tokens = seq->num_cached_prompt_tokens;
  event.output_tokens = seq->num_output_tokens();
  if (event.output_tokens == 1 && !request->prompt_logprobs.empty()) {
    event.prompt_logprobs = request->prompt_logprobs[index];
  }
  if (!Emit(request, event)) return;  // the request has failed and is gone
  if (event.finish != FinishReason::kNone) Finish(seq, event.finish);
}

void Engine::UpdateStats(int64_t generated, int64_t preempted) {
  std::lock_guard lock(stats_mu_);
  stats_.running = static_cast<int64_t>(scheduler_.num_running());
  stats_.waiting = static_cast<int64_t>(scheduler_.num_waiting());
  stats_.kv_cache_usage = blocks_.usage();
  // Token slots per layer: a block holds block_size tokens of one group's layers.
  stats_.kv_cache_slots_used =
      static_cast<int64_t>(blocks_.num_blocks() - blocks_.num_free_blocks()) *
      blocks_.block_size() / blocks_.num_groups();
  stats_.kv_cache_tokens_held = 0;
  for (const Sequence* seq : scheduler_.running()) {
    stats_.kv_cache_tokens_held += seq->num_computed_tokens;
  }
  stats_.generation_tokens_total += generated;
  stats_.preemptions_total += preempted;
  stats_.prefix_cache_queries_total =
      blocks_.prefix_cache_queried_tokens() + scheduler_.prefix_source_queried_tokens();
  stats_.prefix_cache_hits_total =
      blocks_.prefix_cache_hit_tokens() + scheduler_.prefix_source_hit_tokens();
}

EngineStats Engine::stats() const {
  std::lock_guard lock(stats_mu_);
  return stats_;
}

void Engine::Loop(std::stop_token stop) {
  while (!stop.stop_requested()) {
    if (Step()) continue;
    std::unique_lock lock(inbox_mu_);
    inbox_cv_.wait(lock, stop, [this] { return !inbox_.empty() || !aborts_.empty(); });
  }
}

void Engine::Start() {
  if (thread_.joinable()) return;
  thread_ = std::jthread([this](std::stop_token stop) { Loop(stop); });
}

void Engine::Stop() {
  if (!thread_.joinable()) return;
  thread_.request_stop();
  inbox_cv_.notify_all();
  thread_.join();
}

}  // namespace kiln::engine
