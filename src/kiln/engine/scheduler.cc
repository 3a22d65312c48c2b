#include "kiln/engine/scheduler.h"

#include <algorithm>

namespace kiln::engine {
namespace {

// The next `n` tokens of `seq` as a chunk.
ScheduledChunk MakeChunk(Sequence* seq, int64_t n) {
  const int64_t start = seq->num_computed_tokens;
  return ScheduledChunk{
      .seq = seq,
      .start = start,
      .count = n,
      .samples = start + n == seq->num_tokens(),
      .all_logits = seq->needs_prompt_logits && start < seq->num_prompt_tokens - 1};
}

}  // namespace

Scheduler::Scheduler(const SchedulerConfig& config, BlockManager* blocks)
    : config_(config), blocks_(blocks) {}

void Scheduler::Add(Sequence* seq) {
  seq->state = SequenceState::kWaiting;
  waiting_.push_back(seq);
}

void Scheduler::Remove(Sequence* seq) {
  std::erase(running_, seq);
  std::erase(waiting_, seq);
  blocks_->Free(&seq->tables);
  seq->state = SequenceState::kFinished;
}

void Scheduler::Preempt(Sequence* seq, SchedulerStep* step) {
  std::erase(running_, seq);
  blocks_->Free(&seq->tables);
  seq->num_computed_tokens = 0;
  seq->state = SequenceState::kWaiting;
  ++seq->num_preemptions;
  waiting_.push_front(seq);
  step->preempted.push_back(seq);
}

SchedulerStep Scheduler::Schedule() {
  SchedulerStep step;
  int64_t budget = config_.max_num_batched_tokens;
  int64_t logit_rows = std::max<int64_t>(config_.max_num_logit_rows, 1);
  auto cap = [&](const Sequence* seq, int64_t n) {
    if (config_.long_prefill_token_threshold > 0) {
      n = std::min(n, config_.long_prefill_token_threshold);
    }
    if (seq->needs_prompt_logits && seq->num_computed_tokens < seq->num_prompt_tokens - 1) {
      n = std::min(n, logit_rows);
    }
    return std::min(n, budget);
  };
  auto take = [&](Sequence* seq, int64_t n) {
    ScheduledChunk chunk = MakeChunk(seq, n);
    if (chunk.all_logits) logit_rows -= n;
    step.chunks.push_back(chunk);
    step.num_tokens += n;
    budget -= n;
  };

  // Running sequences: decodes (one token behind) first, then the ones still prefilling.
  std::vector<Sequence*> order;
  for (Sequence* s : running_) {
    if (s->num_uncomputed() == 1) order.push_back(s);
  }
  for (Sequence* s : running_) {
    if (s->num_uncomputed() != 1) order.push_back(s);
  }
  for (Sequence* seq : order) {
    if (budget <= 0) break;
    if (seq->state != SequenceState::kRunning) continue;  // preempted earlier in this loop
    int64_t n = cap(seq, seq->num_uncomputed());
    if (n <= 0) continue;
    bool scheduled = true;
    // Blocks of sliding-window layers that this chunk's queries no longer see go first.
    blocks_->FreeOutOfWindow(&seq->tables, seq->num_computed_tokens);
    while (!blocks_->EnsureCapacity(&seq->tables, seq->num_computed_tokens + n)) {
      Sequence* victim = running_.back();
      // Chunks already given to the victim this step are withdrawn.
      for (auto it = step.chunks.begin(); it != step.chunks.end(); ++it) {
        if (it->seq == victim) {
          budget += it->count;
          if (it->all_logits) logit_rows += it->count;
          step.num_tokens -= it->count;
          step.chunks.erase(it);
          break;
        }
      }
      Preempt(victim, &step);
      if (victim == seq) {
        scheduled = false;
        break;
      }
    }
    if (!scheduled) continue;
    take(seq, n);
  }

  // Waiting sequences, oldest (or most recently preempted) first, unless this step preempted.
  while (step.preempted.empty() && !waiting_.empty() && budget > 0 &&
         static_cast<int32_t>(running_.size()) < config_.max_num_seqs) {
    Sequence* seq = waiting_.front();
    const bool fresh = blocks_->LiveBlocks(seq->tables) == 0 && !seq->needs_prompt_logits;
    if (fresh) {
      seq->num_computed_tokens = blocks_->AllocateCachedPrefix(seq->tokens, &seq->tables);
      seq->num_cached_prompt_tokens = seq->num_computed_tokens;
      blocks_->FreeOutOfWindow(&seq->tables, seq->num_computed_tokens);
    }
    int64_t remaining = seq->num_uncomputed();
    if (!config_.enable_chunked_prefill && remaining > budget) break;
    int64_t n = cap(seq, remaining);
    if (n <= 0) break;  // the step's logit rows are spent
    if (!blocks_->EnsureCapacity(&seq->tables, seq->num_computed_tokens + n)) {
      blocks_->Free(&seq->tables);
      seq->num_computed_tokens = 0;
      break;
    }
    if (fresh && prefix_source_ && seq->num_computed_tokens == 0) {
      const int64_t held = prefix_source_(*seq);
      prefix_queried_tokens_ += seq->num_tokens();
      prefix_hit_tokens_ += held;
      seq->num_computed_tokens = held;
      seq->num_cached_prompt_tokens = std::min(held, seq->num_prompt_tokens);
      n = cap(seq, seq->num_uncomputed());
    }
    waiting_.pop_front();
    running_.push_back(seq);
    seq->state = SequenceState::kRunning;
    take(seq, n);
  }
  return step;
}

void Scheduler::Complete(const SchedulerStep& step) {
  for (const ScheduledChunk& c : step.chunks) {
    c.seq->num_computed_tokens = c.start + c.count;
    blocks_->CommitFullBlocks(c.seq->tokens, c.seq->num_computed_tokens, &c.seq->tables);
  }
}

}  // namespace kiln::engine
