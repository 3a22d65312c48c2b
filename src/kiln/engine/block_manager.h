// BlockManager: the KV cache as a pool of fixed-size blocks, with prefix caching.
//
// An executor states its geometry (block size, number of blocks); every running sequence holds a
// BlockTable of block ids covering its tokens. With prefix caching, each full block is keyed by
// a hash chained over all tokens up to its end, so two sequences that share a prompt prefix share
// its blocks. Freed blocks that hold a cached prefix stay findable until they are reused, least
// recently freed first. A runtime whose cache is one slot per sequence (onnx-genai) uses one
// block of context_length tokens and no prefix caching.
#pragma once

#include <cstdint>
#include <deque>
#include <span>
#include <unordered_map>
#include <vector>

namespace kiln::engine {

struct BlockTable {
  std::vector<int32_t> blocks;
  std::vector<uint64_t> block_hashes;  // chained hashes of the leading full, committed blocks
};

class BlockManager {
 public:
  BlockManager(int32_t num_blocks, int32_t block_size, bool enable_prefix_caching);

  int32_t block_size() const { return block_size_; }
  int32_t num_blocks() const { return static_cast<int32_t>(ref_counts_.size()); }
  int32_t num_free_blocks() const { return static_cast<int32_t>(free_count_); }
  // Fraction of blocks held by sequences (cached-but-free blocks count as free).
  double usage() const;
  // Blocks needed to hold `num_tokens` tokens.
  int64_t BlocksFor(int64_t num_tokens) const;

  // Claims cached blocks matching the longest prefix of `tokens` made of full blocks, leaving at
  // least one token uncomputed (its logits are needed). `table` must be empty. Returns the
  // number of tokens covered.
  int64_t AllocateCachedPrefix(std::span<const int32_t> tokens, BlockTable* table);

  // Grows `table` to cover `num_tokens` tokens. Returns false, changing nothing, when there are
  // not enough free blocks.
  bool EnsureCapacity(BlockTable* table, int64_t num_tokens);

  // Registers the full blocks among the first `num_computed` tokens in the prefix cache.
  void CommitFullBlocks(std::span<const int32_t> tokens, int64_t num_computed, BlockTable* table);

  // Returns the table's blocks to the pool and clears it.
  void Free(BlockTable* table);

  // Counters for metrics: prefix-cache lookups in tokens.
  int64_t prefix_cache_queried_tokens() const { return queried_tokens_; }
  int64_t prefix_cache_hit_tokens() const { return hit_tokens_; }

 private:
  struct CachedBlock {
    int32_t block;
    std::vector<int32_t> tokens;  // guards against hash collisions
  };
  int32_t TakeFreeBlock();
  void DropStaleEntries();
  uint64_t ChainHash(uint64_t parent, std::span<const int32_t> tokens) const;

  int32_t block_size_;
  bool prefix_caching_;
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
