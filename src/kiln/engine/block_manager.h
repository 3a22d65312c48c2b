// BlockManager: the KV cache as a pool of fixed-size blocks, with prefix caching.
//
// An executor states its geometry (block size, number of blocks); every running sequence holds a
// BlockTable of block ids covering its tokens. With prefix caching, each full block is keyed by
// a hash chained over all tokens up to its end, so two sequences that share a prompt prefix share
// its blocks. Freed blocks that hold a cached prefix stay findable until they are reused, least
// recently freed first. A runtime whose cache is one slot per sequence (onnx-genai) uses one
// block of context_length tokens and no prefix caching.
//
// A model whose layers attend differently (Gemma 3: sliding-window layers beside global ones)
// splits its cache into groups of layers, as vLLM's hybrid cache manager does: a sequence holds
// one table per group, all drawing on the one pool (a block holds block_size tokens of one
// group's layers), and a sliding-window group's blocks that fall wholly out of the window are
// freed (their table entries become -1). Prefix caching keys each group's blocks apart; a
// prefix is reused as far as every group still holds it.
#pragma once

#include <cstdint>
#include <deque>
#include <span>
#include <unordered_map>
#include <vector>

namespace kiln::engine {

struct BlockTable {
  std::vector<int32_t> blocks;         // -1: freed, out of a sliding window
  std::vector<uint64_t> block_hashes;  // chained hashes of the leading full, committed blocks
  int64_t num_freed = 0;               // leading entries freed out of the window
};

class BlockManager {
 public:
  // `group_windows`: the attention window of each group's layers in tokens, 0 for full
  // attention; empty: one group of full attention.
  BlockManager(int32_t num_blocks, int32_t block_size, bool enable_prefix_caching,
               std::vector<int32_t> group_windows = {});

  int32_t block_size() const { return block_size_; }
  int32_t num_blocks() const { return static_cast<int32_t>(ref_counts_.size()); }
  int32_t num_free_blocks() const { return static_cast<int32_t>(free_count_); }
  // Fraction of blocks held by sequences (cached-but-free blocks count as free).
  double usage() const;
  // Blocks needed to hold `num_tokens` tokens in one group.
  int64_t BlocksFor(int64_t num_tokens) const;
  int num_groups() const { return static_cast<int>(windows_.size()); }
  // Blocks a sequence of `num_tokens` tokens may hold at once over all its groups (a bound: a
  // sliding group holds fewer once its window has moved on).
  int64_t BlocksForSequence(int64_t num_tokens) const {
    return num_groups() * BlocksFor(num_tokens);
  }

  // A sequence's tables, one per group (resized to num_groups() by the calls that fill them).
  //
  // Claims cached blocks for the longest prefix of `tokens` made of full blocks that every group
  // can serve (a sliding-window group needs only the blocks the next query sees; the entries
  // before are -1), leaving at least one token uncomputed (its logits are needed). The tables
  // must be empty. Returns the number of tokens covered.
  int64_t AllocateCachedPrefix(std::span<const int32_t> tokens, std::vector<BlockTable>* tables);
  // Grows every table to cover `num_tokens` tokens. Returns false, changing nothing, when there
  // are not enough free blocks for all of them.
  bool EnsureCapacity(std::vector<BlockTable>* tables, int64_t num_tokens);
  // Registers the full blocks among the first `num_computed` tokens in the prefix cache.
  void CommitFullBlocks(std::span<const int32_t> tokens, int64_t num_computed,
                        std::vector<BlockTable>* tables);
  // Returns the tables' blocks to the pool and clears them.
  void Free(std::vector<BlockTable>* tables);
  // Frees, in each sliding-window group, the blocks that no query at `position` or later sees:
  // those wholly before position - window + 1.
  void FreeOutOfWindow(std::vector<BlockTable>* tables, int64_t position);
  // Blocks the tables hold (freed entries not counted).
  int64_t LiveBlocks(const std::vector<BlockTable>& tables) const;

  // Counters for metrics: prefix-cache lookups in tokens.
  int64_t prefix_cache_queried_tokens() const { return queried_tokens_; }
  int64_t prefix_cache_hit_tokens() const { return hit_tokens_; }

 private:
  struct CachedBlock {
    int32_t block;
    std::vector<int32_t> tokens;  // guards against hash collisions
  };
  int32_t TakeFreeBlock();
  void Release(int32_t block);
  // One table: grown to `num_tokens` tokens (the caller has checked the free blocks), freed.
  void Grow(BlockTable* table, int64_t num_tokens);
  void Free(BlockTable* table);
  void DropStaleEntries();
  uint64_t ChainHash(uint64_t parent, std::span<const int32_t> tokens) const;
  void Commit(std::span<const int32_t> tokens, int64_t num_computed, uint64_t salt,
              BlockTable* table);
  static uint64_t Salt(int group);  // 0 for the first group: its hashes are the one-group ones
  // The first block a query at `position` sees in `group`: block b holds positions
  // [b * block_size, (b + 1) * block_size), and a sliding window starts at position - window + 1.
  int64_t FirstSeenBlock(int group, int64_t position) const;

  int32_t block_size_;
  bool prefix_caching_;
  std::vector<int32_t> windows_;
  std::vector<int32_t> ref_counts_;
  std::vector<uint64_t> block_hash_;  // hash a block is cached under; 0: none
  std::vector<bool> has_hash_;
  // Free blocks, least recently freed first, as (block, generation). An entry is stale when its
  // block was claimed again through the cache (generation no longer matches, or not free).
  std::deque<std::pair<int32_t, uint32_t>> free_queue_;
  std::vector<bool> is_free_;
  std::vector<uint32_t> free_generation_;
  size_t free_count_ = 0;
  std::unordered_map<uint64_t, CachedBlock> cache_;
  int64_t queried_tokens_ = 0;
  int64_t hit_tokens_ = 0;
};

}  // namespace kiln::engine
