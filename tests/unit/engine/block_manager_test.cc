#include "kiln/engine/block_manager.h"

#include <gtest/gtest.h>

#include <numeric>
#include <random>
#include <set>

namespace kiln::engine {
namespace {

std::vector<int32_t> Iota(int n, int start = 0) {
  std::vector<int32_t> v(n);
  std::iota(v.begin(), v.end(), start);
  return v;
}

TEST(BlockManagerTest, AllocatesAndFrees) {
  BlockManager bm(8, 4, false);
  std::vector<BlockTable> t;
  EXPECT_TRUE(bm.EnsureCapacity(&t, 9));
  EXPECT_EQ(t[0].blocks.size(), 3u);
  EXPECT_EQ(bm.num_free_blocks(), 5);
  EXPECT_TRUE(bm.EnsureCapacity(&t, 12));  // still three blocks
  EXPECT_EQ(t[0].blocks.size(), 3u);
  EXPECT_FALSE(bm.EnsureCapacity(&t, 40));  // needs 10 > 8: nothing changes
  EXPECT_EQ(t[0].blocks.size(), 3u);
  bm.Free(&t);
  EXPECT_EQ(bm.num_free_blocks(), 8);
  EXPECT_DOUBLE_EQ(bm.usage(), 0.0);
}

TEST(BlockManagerTest, SharesACommittedPrefix) {
  BlockManager bm(16, 4, true);
  auto tokens = Iota(10);
  std::vector<BlockTable> a;
  ASSERT_TRUE(bm.EnsureCapacity(&a, 10));
  bm.CommitFullBlocks(tokens, 10, &a);  // blocks 0 and 1 are full
  std::vector<BlockTable> b;
  EXPECT_EQ(bm.AllocateCachedPrefix(tokens, &b), 8);
  EXPECT_EQ(b[0].blocks[0], a[0].blocks[0]);
  EXPECT_EQ(b[0].blocks[1], a[0].blocks[1]);
  // A different second block shares only the first.
  auto other = tokens;
  other[5] = 99;
  std::vector<BlockTable> c;
  EXPECT_EQ(bm.AllocateCachedPrefix(other, &c), 4);
  EXPECT_EQ(bm.prefix_cache_hit_tokens(), 12);
}

TEST(BlockManagerTest, NeverCachesTheWholeSequence) {
  BlockManager bm(16, 4, true);
  auto tokens = Iota(8);
  std::vector<BlockTable> a;
  ASSERT_TRUE(bm.EnsureCapacity(&a, 8));
  bm.CommitFullBlocks(tokens, 8, &a);
  std::vector<BlockTable> b;
  EXPECT_EQ(bm.AllocateCachedPrefix(tokens, &b), 4);  // the last token must be computed
}

TEST(BlockManagerTest, FreedCachedBlocksAreFoundUntilReused) {
  BlockManager bm(4, 4, true);
  auto tokens = Iota(9);
  std::vector<BlockTable> a;
  ASSERT_TRUE(bm.EnsureCapacity(&a, 9));
  bm.CommitFullBlocks(tokens, 9, &a);
  bm.Free(&a);
  EXPECT_EQ(bm.num_free_blocks(), 4);
  std::vector<BlockTable> b;
  EXPECT_EQ(bm.AllocateCachedPrefix(tokens, &b), 8);
  EXPECT_EQ(bm.num_free_blocks(), 2);
  bm.Free(&b);
  // Fill the pool with other tokens: the cached blocks get evicted.
  std::vector<BlockTable> c;
  ASSERT_TRUE(bm.EnsureCapacity(&c, 16));
  auto fresh = Iota(16, 1000);
  bm.CommitFullBlocks(fresh, 16, &c);
  bm.Free(&c);
  std::vector<BlockTable> d;
  EXPECT_EQ(bm.AllocateCachedPrefix(tokens, &d), 0);
}

TEST(BlockManagerTest, StaleFreeEntriesDoNotLeakOrDoubleAllocate) {
  BlockManager bm(4, 2, true);
  auto tokens = Iota(5);
  std::vector<BlockTable> a;
  ASSERT_TRUE(bm.EnsureCapacity(&a, 5));
  bm.CommitFullBlocks(tokens, 5, &a);
  bm.Free(&a);
  for (int i = 0; i < 1000; ++i) {  // claim from the cache and free, many times
    std::vector<BlockTable> b;
    ASSERT_EQ(bm.AllocateCachedPrefix(tokens, &b), 4);
    bm.Free(&b);
  }
  std::vector<BlockTable> all;
  ASSERT_TRUE(bm.EnsureCapacity(&all, 8));
  std::sort(all[0].blocks.begin(), all[0].blocks.end());
  EXPECT_EQ(all[0].blocks, (std::vector<int32_t>{0, 1, 2, 3}));
  EXPECT_EQ(bm.num_free_blocks(), 0);
}

// A prefix cached in a sliding-window group serves from the blocks its window covers alone:
// the ones that fell out of the window may be long gone.
TEST(BlockManagerTest, ASlidingGroupServesAPrefixFromItsWindowAlone) {
  BlockManager bm(40, 2, true, {0, 4});
  auto tokens = Iota(21);
  std::vector<BlockTable> a;
  ASSERT_TRUE(bm.EnsureCapacity(&a, 21));
  bm.CommitFullBlocks(tokens, 21, &a);
  const std::vector<int32_t> sliding = a[1].blocks;
  bm.FreeOutOfWindow(&a, 21);  // a query at 21 sees 18..21: blocks 9 and 10
  EXPECT_EQ(a[1].num_freed, 9);
  EXPECT_EQ(bm.LiveBlocks(a), 11 + 2);
  // Reusing nearly every free block evicts the first 8 of the 9 sliding blocks a let go (the
  // least recently freed go first); block 8 stays cached.
  std::vector<BlockTable> filler;
  ASSERT_TRUE(bm.EnsureCapacity(&filler, 26));
  bm.Free(&filler);
  std::vector<BlockTable> b;
  // At most 10 blocks (the last token is always computed); the sliding group needs blocks 8
  // and 9 for a query at 20 (it sees 17..20): 8 from the cache, 9 shared with a.
  EXPECT_EQ(bm.AllocateCachedPrefix(tokens, &b), 20);
  EXPECT_EQ(b[0].blocks, std::vector<int32_t>(a[0].blocks.begin(), a[0].blocks.begin() + 10));
  EXPECT_EQ(b[1].num_freed, 8);
  EXPECT_EQ(b[1].blocks[7], -1);
  EXPECT_EQ(b[1].blocks[8], sliding[8]);
  EXPECT_EQ(b[1].blocks[9], sliding[9]);
  EXPECT_EQ(a[1].blocks[9], sliding[9]);
}

// Random admissions (through the prefix cache), extensions, window moves, commits and frees of
// sequences with one full-attention and two sliding-window groups: after every operation each
// block is either free or held, the held ones are exactly what the live tables name, a sliding
// table's freed entries are its leading ones and lie wholly out of its window, and a full
// table frees nothing.
TEST(BlockManagerTest, GroupsKeepEveryBlockAccountedForUnderRandomOperations) {
  const std::vector<int32_t> windows = {0, 6, 6};
  const int32_t block_size = 2, num_blocks = 60;
  BlockManager bm(num_blocks, block_size, true, windows);
  ASSERT_EQ(bm.num_groups(), 3);
  std::mt19937 rng(21);
  struct Seq {
    std::vector<int32_t> tokens;
    std::vector<BlockTable> tables;
    int64_t computed = 0;
  };
  std::vector<Seq> live;
  auto check = [&] {
    std::set<int32_t> held;
    for (const Seq& s : live) {
      ASSERT_EQ(s.tables.size(), 3u);
      for (size_t g = 0; g < 3; ++g) {
        const BlockTable& t = s.tables[g];
        for (size_t b = 0; b < t.blocks.size(); ++b) {
          if (static_cast<int64_t>(b) < t.num_freed) {
            ASSERT_EQ(t.blocks[b], -1);
            ASSERT_GT(windows[g], 0) << "a full-attention table freed a block";
            // Wholly before the first position the next query (at `computed`) sees.
            ASSERT_LE(static_cast<int64_t>(b + 1) * block_size, s.computed - windows[g] + 1);
          } else {
            ASSERT_GE(t.blocks[b], 0);
            held.insert(t.blocks[b]);
          }
        }
      }
    }
    ASSERT_EQ(static_cast<int64_t>(held.size()), num_blocks - bm.num_free_blocks());
  };
  std::uniform_int_distribution<int> op(0, 9), token(0, 3), len(1, 9);
  for (int step = 0; step < 3000; ++step) {
    const int o = op(rng);
    if (o < 3 || live.empty()) {  // admit: a few tokens from a small alphabet share prefixes
      Seq s;
      for (int i = len(rng); i > 0; --i) s.tokens.push_back(token(rng));
      s.computed = bm.AllocateCachedPrefix(s.tokens, &s.tables);
      ASSERT_EQ(s.computed % block_size, 0);
      bm.FreeOutOfWindow(&s.tables, s.computed);
      if (bm.EnsureCapacity(&s.tables, static_cast<int64_t>(s.tokens.size()))) {
        s.computed = static_cast<int64_t>(s.tokens.size());
        bm.CommitFullBlocks(s.tokens, s.computed, &s.tables);
        live.push_back(std::move(s));
      } else {
        bm.Free(&s.tables);
      }
    } else if (o < 8) {  // extend one sequence by a few tokens, its window moving on first
      Seq& s = live[rng() % live.size()];
      const int add = len(rng);
      bm.FreeOutOfWindow(&s.tables, s.computed);
      if (bm.EnsureCapacity(&s.tables, s.computed + add)) {
        for (int i = 0; i < add; ++i) s.tokens.push_back(token(rng));
        s.computed += add;
        bm.CommitFullBlocks(s.tokens, s.computed, &s.tables);
      }
    } else {  // finish or preempt one
      const size_t i = rng() % live.size();
      bm.Free(&live[i].tables);
      live.erase(live.begin() + static_cast<std::ptrdiff_t>(i));
    }
    check();
    if (HasFatalFailure()) return;
  }
  for (Seq& s : live) bm.Free(&s.tables);
  EXPECT_EQ(bm.num_free_blocks(), num_blocks);
}

}  // namespace
}  // namespace kiln::engine
