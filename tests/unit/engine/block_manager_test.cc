#include "kiln/engine/block_manager.h"

#include <gtest/gtest.h>

#include <numeric>

namespace kiln::engine {
namespace {

std::vector<int32_t> Iota(int n, int start = 0) {
  std::vector<int32_t> v(n);
  std::iota(v.begin(), v.end(), start);
  return v;
}

TEST(BlockManagerTest, AllocatesAndFrees) {
  BlockManager bm(8, 4, false);
  BlockTable t;
  EXPECT_TRUE(bm.EnsureCapacity(&t, 9));
  EXPECT_EQ(t.blocks.size(), 3u);
  EXPECT_EQ(bm.num_free_blocks(), 5);
  EXPECT_TRUE(bm.EnsureCapacity(&t, 12));  // still three blocks
  EXPECT_EQ(t.blocks.size(), 3u);
  EXPECT_FALSE(bm.EnsureCapacity(&t, 40));  // needs 10 > 8: nothing changes
  EXPECT_EQ(t.blocks.size(), 3u);
  bm.Free(&t);
  EXPECT_EQ(bm.num_free_blocks(), 8);
  EXPECT_DOUBLE_EQ(bm.usage(), 0.0);
}

TEST(BlockManagerTest, SharesACommittedPrefix) {
  BlockManager bm(16, 4, true);
  auto tokens = Iota(10);
  BlockTable a;
  ASSERT_TRUE(bm.EnsureCapacity(&a, 10));
  bm.CommitFullBlocks(tokens, 10, &a);  // blocks 0 and 1 are full
  BlockTable b;
  EXPECT_EQ(bm.AllocateCachedPrefix(tokens, &b), 8);
  EXPECT_EQ(b.blocks[0], a.blocks[0]);
  EXPECT_EQ(b.blocks[1], a.blocks[1]);
  // A different second block shares only the first.
  auto other = tokens;
  other[5] = 99;
  BlockTable c;
  EXPECT_EQ(bm.AllocateCachedPrefix(other, &c), 4);
  EXPECT_EQ(bm.prefix_cache_hit_tokens(), 12);
}

TEST(BlockManagerTest, NeverCachesTheWholeSequence) {
  BlockManager bm(16, 4, true);
  auto tokens = Iota(8);
  BlockTable a;
  ASSERT_TRUE(bm.EnsureCapacity(&a, 8));
  bm.CommitFullBlocks(tokens, 8, &a);
  BlockTable b;
  EXPECT_EQ(bm.AllocateCachedPrefix(tokens, &b), 4);  // the last token must be computed
}

TEST(BlockManagerTest, FreedCachedBlocksAreFoundUntilReused) {
  BlockManager bm(4, 4, true);
  auto tokens = Iota(9);
  BlockTable a;
  ASSERT_TRUE(bm.EnsureCapacity(&a, 9));
  bm.CommitFullBlocks(tokens, 9, &a);
  bm.Free(&a);
  EXPECT_EQ(bm.num_free_blocks(), 4);
  BlockTable b;
  EXPECT_EQ(bm.AllocateCachedPrefix(tokens, &b), 8);
  EXPECT_EQ(bm.num_free_blocks(), 2);
  bm.Free(&b);
  // Fill the pool with other tokens: the cached blocks get evicted.
  BlockTable c;
  ASSERT_TRUE(bm.EnsureCapacity(&c, 16));
  auto fresh = Iota(16, 1000);
  bm.CommitFullBlocks(fresh, 16, &c);
  bm.Free(&c);
  BlockTable d;
  EXPECT_EQ(bm.AllocateCachedPrefix(tokens, &d), 0);
}

TEST(BlockManagerTest, StaleFreeEntriesDoNotLeakOrDoubleAllocate) {
  BlockManager bm(4, 2, true);
  auto tokens = Iota(5);
  BlockTable a;
  ASSERT_TRUE(bm.EnsureCapacity(&a, 5));
  bm.CommitFullBlocks(tokens, 5, &a);
  bm.Free(&a);
  for (int i = 0; i < 1000; ++i) {  // claim from the cache and free, many times
    BlockTable b;
    ASSERT_EQ(bm.AllocateCachedPrefix(tokens, &b), 4);
    bm.Free(&b);
  }
  BlockTable all;
  ASSERT_TRUE(bm.EnsureCapacity(&all, 8));
  std::sort(all.blocks.begin(), all.blocks.end());
  EXPECT_EQ(all.blocks, (std::vector<int32_t>{0, 1, 2, 3}));
  EXPECT_EQ(bm.num_free_blocks(), 0);
}

}  // namespace
}  // namespace kiln::engine
