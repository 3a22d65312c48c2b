// Executor: what a runtime provides to the engine core — its KV-cache geometry and a forward
// pass over one scheduled step.
#pragma once

#include <cstdint>
#include <vector>

#include "kiln/base/status.h"
#include "kiln/engine/scheduler.h"

namespace kiln::engine {

// What an executor can do, which decides how the engine drives it.
struct ExecutorCapabilities {
  // Its KV cache is paged: sequences hold blocks the engine's BlockManager hands out (block
  // tables). Otherwise it keeps one slot per sequence.
  bool paged_kv_cache = true;
  // It can reuse computed KV of a prompt prefix. Paged: it computes a chunk whose earlier
  // positions sit in blocks another sequence filled (the BlockManager shares them). Slot-based:
  // it implements AdmitWithCachedPrefix. The engine turns prefix caching on only where this is
  // true.
  bool prefix_caching = false;
};

struct KvCacheGeometry {
  int32_t block_size = 16;  // tokens per block (context_length for one-slot-per-sequence caches)
  int32_t num_blocks = 0;
  // The KV cache's groups of layers (BlockManager), as each group's attention window in tokens
  // (0: full attention); empty: one group of full attention. A block holds block_size tokens of
  // one group's layers.
  std::vector<int32_t> group_windows;
};

class Executor {
 public:
  virtual ~Executor() = default;

  virtual KvCacheGeometry kv_geometry() const = 0;
  virtual ExecutorCapabilities capabilities() const = 0;
  virtual int64_t vocab_size() const = 0;

  // Computes every chunk of `step` (tokens [start, start + count) of each sequence, written into
  // the KV cache blocks of its block table) and appends rows of vocab_size() logits to `logits`,
  // in chunk order: `count` rows (one per position) for a chunk with all_logits, otherwise one
  // row for a chunk that samples (its last position) and none for one that does not.
  virtual Status Execute(const SchedulerStep& step, std::vector<float>* logits) = 0;

  // A sequence has left the engine (finished, aborted or preempted).
  virtual void Release(const Sequence& seq) { (void)seq; }

  // Prefix caching for a cache that is not paged (one slot per sequence), called as a sequence
  // with nothing computed is admitted: the executor may give it a slot that already holds the KV
  // of a prefix of its tokens, left by an earlier sequence. Returns how many leading tokens are
  // held (at most all but the last; 0 for none). Paged runtimes share blocks through the
  // BlockManager instead and leave this alone.
  virtual int64_t AdmitWithCachedPrefix(const Sequence& seq) {
    (void)seq;
    return 0;
  }
};

}  // namespace kiln::engine
