#include "kiln/engine/block_manager.h"

#include <algorithm>
#include <cassert>

namespace kiln::engine {

BlockManager::BlockManager(int32_t num_blocks, int32_t block_size, bool enable_prefix_caching,
                           std::vector<int32_t> group_windows)
    : block_size_(block_size),
      prefix_caching_(enable_prefix_caching),
      windows_(group_windows.empty() ? std::vector<int32_t>{0} : std::move(group_windows)),
      ref_counts_(num_blocks, 0),
      block_hash_(num_blocks, 0),
      has_hash_(num_blocks, false),
      is_free_(num_blocks, true),
      free_generation_(num_blocks, 0),
      free_count_(num_blocks) {
  for (int32_t b = 0; b < num_blocks; ++b) free_queue_.emplace_back(b, 0);
}

void BlockManager::DropStaleEntries() {
  std::erase_if(free_queue_, [this](const std::pair<int32_t, uint32_t>& e) {
    return !is_free_[e.first] || free_generation_[e.first] != e.second;
  });
}

double BlockManager::usage() const {
  if (ref_counts_.empty()) return 0.0;
  return 1.0 - static_cast<double>(free_count_) / static_cast<double>(ref_counts_.size());
}

int64_t BlockManager::BlocksFor(int64_t num_tokens) const {
  return (num_tokens + block_size_ - 1) / block_size_;
}

uint64_t BlockManager::ChainHash(uint64_t parent, std::span<const int32_t> tokens) const {
  // 64-bit mix (splitmix64 finalizer) over the parent hash and the block's tokens.
  uint64_t h = parent ^ 0x9e3779b97f4a7c15ull;
  for (int32_t t : tokens) {
    h ^= static_cast<uint64_t>(static_cast<uint32_t>(t)) + 0x9e3779b97f4a7c15ull + (h << 6) +
         (h >> 2);
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
  }
  return h == 0 ? 1 : h;
}

int32_t BlockManager::TakeFreeBlock() {
  while (true) {
    assert(!free_queue_.empty());
    auto [b, generation] = free_queue_.front();
    free_queue_.pop_front();
    if (!is_free_[b] || free_generation_[b] != generation) continue;  // stale
    is_free_[b] = false;
    --free_count_;
    if (has_hash_[b]) {  // evict its cached prefix
      auto it = cache_.find(block_hash_[b]);
      if (it != cache_.end() && it->second.block == b) cache_.erase(it);
      has_hash_[b] = false;
    }
    ref_counts_[b] = 1;
    return b;
  }
}

uint64_t BlockManager::Salt(int group) {
  return group == 0 ? 0 : 0xd6e8feb86659fd93ull * static_cast<uint64_t>(group);
}

int64_t BlockManager::AllocateCachedPrefix(std::span<const int32_t> tokens,
                                           std::vector<BlockTable>* tables) {
  tables->resize(windows_.size());
  if (!prefix_caching_ || tokens.empty()) return 0;
  queried_tokens_ += static_cast<int64_t>(tokens.size());
  const int64_t limit = static_cast<int64_t>(tokens.size() - 1) / block_size_;
  // Per group, each leading block's chained hash and its cached block (-1: not cached).
  std::vector<std::vector<uint64_t>> hashes(windows_.size());
  std::vector<std::vector<int32_t>> cached(windows_.size());
  for (size_t g = 0; g < windows_.size(); ++g) {
    uint64_t parent = Salt(static_cast<int>(g));
    for (int64_t i = 0; i < limit; ++i) {
      auto chunk = tokens.subspan(i * block_size_, block_size_);
      parent = ChainHash(parent, chunk);
      hashes[g].push_back(parent);
      auto it = cache_.find(parent);
      const bool hit =
          it != cache_.end() && std::equal(chunk.begin(), chunk.end(), it->second.tokens.begin(),
                                           it->second.tokens.end());
      cached[g].push_back(hit ? it->second.block : -1);
    }
  }
  // The longest prefix of h blocks that every group can serve: a full-attention group needs
  // blocks [0, h) cached, a sliding group only those the next query (at position h *
  // block_size) sees. Shrinking h for one group may fail another, so repeat until all agree.
  int64_t blocks = limit;
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t g = 0; g < windows_.size(); ++g) {
      int64_t h = blocks;
      while (h > 0) {
        const int64_t first = FirstSeenBlock(static_cast<int>(g), h * block_size_);
        int64_t b = h - 1;
        while (b >= first && cached[g][b] >= 0) --b;
        if (b < first) break;  // all seen blocks cached
        h = b;                 // the prefix must end before the missing block
      }
      if (h < blocks) {
        blocks = h;
        changed = true;
      }
    }
  }
  for (size_t g = 0; g < windows_.size(); ++g) {
    BlockTable& table = (*tables)[g];
    assert(table.blocks.empty());
    const int64_t first = FirstSeenBlock(static_cast<int>(g), blocks * block_size_);
    for (int64_t b = 0; b < blocks; ++b) {
      table.block_hashes.push_back(hashes[g][b]);
      if (b < first) {  // out of the window: never needed again
        table.blocks.push_back(-1);
        continue;
      }
      const int32_t block = cached[g][b];
      if (ref_counts_[block] == 0) {
        is_free_[block] = false;  // its queue entry goes stale
        --free_count_;
      }
      ++ref_counts_[block];
      table.blocks.push_back(block);
    }
    table.num_freed = first;
  }
  hit_tokens_ += blocks * block_size_;
  return blocks * block_size_;
}

int64_t BlockManager::FirstSeenBlock(int group, int64_t position) const {
  const int32_t window = windows_[static_cast<size_t>(group)];
  if (window <= 0) return 0;
  return std::max<int64_t>(position - window + 1, 0) / block_size_;
}

bool BlockManager::EnsureCapacity(std::vector<BlockTable>* tables, int64_t num_tokens) {
  tables->resize(windows_.size());
  int64_t need = 0;
  for (const BlockTable& table : *tables) {
    need += std::max<int64_t>(0, BlocksFor(num_tokens) - static_cast<int64_t>(table.blocks.size()));
  }
  if (need > static_cast<int64_t>(free_count_)) return false;
  for (BlockTable& table : *tables) Grow(&table, num_tokens);
  return true;
}

void BlockManager::CommitFullBlocks(std::span<const int32_t> tokens, int64_t num_computed,
                                    std::vector<BlockTable>* tables) {
  for (size_t g = 0; g < tables->size(); ++g) {
    Commit(tokens, num_computed, Salt(static_cast<int>(g)), &(*tables)[g]);
  }
}

void BlockManager::Free(std::vector<BlockTable>* tables) {
  for (BlockTable& table : *tables) Free(&table);
}

void BlockManager::FreeOutOfWindow(std::vector<BlockTable>* tables, int64_t position) {
  for (size_t g = 0; g < tables->size() && g < windows_.size(); ++g) {
    if (windows_[g] <= 0) continue;
    BlockTable& table = (*tables)[g];
    const int64_t gone = std::min<int64_t>(FirstSeenBlock(static_cast<int>(g), position),
                                           static_cast<int64_t>(table.blocks.size()));
    for (int64_t b = table.num_freed; b < gone; ++b) {
      Release(table.blocks[b]);
      table.blocks[b] = -1;
    }
    table.num_freed = std::max(table.num_freed, gone);
  }
}

int64_t BlockManager::LiveBlocks(const std::vector<BlockTable>& tables) const {
  int64_t live = 0;
  for (const BlockTable& table : tables) {
    live += static_cast<int64_t>(table.blocks.size()) - table.num_freed;
  }
  return live;
}

void BlockManager::Grow(BlockTable* table, int64_t num_tokens) {
  for (int64_t need = BlocksFor(num_tokens) - static_cast<int64_t>(table->blocks.size()); need > 0;
       --need) {
    table->blocks.push_back(TakeFreeBlock());
  }
}

void BlockManager::Commit(std::span<const int32_t> tokens, int64_t num_computed, uint64_t salt,
                          BlockTable* table) {
  if (!prefix_caching_) return;
  int64_t full =
      std::min<int64_t>(num_computed / block_size_, static_cast<int64_t>(table->blocks.size()));
  uint64_t parent = table->block_hashes.empty() ? salt : table->block_hashes.back();
  for (int64_t i = static_cast<int64_t>(table->block_hashes.size()); i < full; ++i) {
    auto chunk = tokens.subspan(i * block_size_, block_size_);
    uint64_t h = ChainHash(parent, chunk);
    int32_t b = table->blocks[i];
    table->block_hashes.push_back(h);
    parent = h;
    if (b < 0) continue;                 // freed out of the window before it was committed
    if (cache_.count(h) != 0) continue;  // an identical block is already cached
    cache_.emplace(h, CachedBlock{b, std::vector<int32_t>(chunk.begin(), chunk.end())});
    block_hash_[b] = h;
    has_hash_[b] = true;
  }
}

void BlockManager::Release(int32_t b) {
  assert(ref_counts_[b] > 0);
  if (--ref_counts_[b] == 0) {
    is_free_[b] = true;
    free_queue_.emplace_back(b, ++free_generation_[b]);
    ++free_count_;
  }
  if (free_queue_.size() > 2 * ref_counts_.size() + 64) DropStaleEntries();
}

void BlockManager::Free(BlockTable* table) {
  // Free in reverse so that a prefix's tail blocks are evicted before its head.
  for (auto it = table->blocks.rbegin(); it != table->blocks.rend(); ++it) {
    if (*it >= 0) Release(*it);
  }
  table->blocks.clear();
  table->block_hashes.clear();
  table->num_freed = 0;
}

}  // namespace kiln::engine
