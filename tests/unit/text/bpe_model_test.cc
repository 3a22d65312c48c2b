// BpeModel's two merge orders and its unknown-character handling, on vocabularies small enough
// to work out by hand.
#include "kiln/text/bpe_model.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

namespace kiln::text {
namespace {

using Ids = std::vector<int32_t>;

Ids Encode(const BpeModel& m, const std::string& word) {
  Ids out;
  m.EncodeWord(word, &out);
  return out;
}

// a=0 b=1 c=2 ab=3 bc=4 abc=5
std::vector<std::string> Vocab() { return {"a", "b", "c", "ab", "bc", "abc"}; }

TEST(BpeModelTest, MergesFollowRankThenPosition) {
  // "b c" outranks "a b": abc -> a bc, and a+bc is not a merge.
  auto m = BpeModel::Create(Vocab(), {{"b", "c"}, {"a", "b"}}, {}, {}, true);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(Encode(*m, "abc"), (Ids{0, 4}));
  // With "a b" first, then "ab c": abc -> ab c -> abc.
  auto m2 = BpeModel::Create(Vocab(), {{"a", "b"}, {"ab", "c"}, {"b", "c"}}, {}, {}, true);
  ASSERT_TRUE(m2.ok());
  EXPECT_EQ(Encode(*m2, "abc"), (Ids{5}));
  // Equal ranks resolve leftmost first: "abab" -> ab ab.
  EXPECT_EQ(Encode(*m2, "abab"), (Ids{3, 3}));
}

TEST(BpeModelTest, ScoresPickTheBestTokenAnyPairForms) {
  BpeModel::Options options;
  options.use_scores = true;
  // bc scores higher than ab, so b joins c first even though no merge list says so.
  auto m = BpeModel::Create(Vocab(), {}, {0, 0, 0, -2.0f, -1.0f, -3.0f}, options, false);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(Encode(*m, "abc"), (Ids{5}));     // bc first, then a+bc = abc is a token
  EXPECT_EQ(Encode(*m, "abb"), (Ids{3, 1}));  // only ab can form
}

TEST(BpeModelTest, IgnoreMergesEmitsWholeWords) {
  BpeModel::Options options;
  options.ignore_merges = true;
  auto m = BpeModel::Create(Vocab(), {}, {}, options, true);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(Encode(*m, "abc"), (Ids{5}));
  EXPECT_EQ(Encode(*m, "cab"), (Ids{2, 0, 1}));
}

TEST(BpeModelTest, UnknownCharactersFuseIntoOneUnknown) {
  std::vector<std::string> vocab = {"<unk>", "a"};
  BpeModel::Options options;
  options.unk_id = 0;
  options.fuse_unk = true;
  auto fused = BpeModel::Create(vocab, {}, {}, options, true);
  ASSERT_TRUE(fused.ok());
  EXPECT_EQ(Encode(*fused,
                   "a\xC3\xA9\xC3\xA9"
                   "a"),
            (Ids{1, 0, 1}));
  options.fuse_unk = false;
  auto separate = BpeModel::Create(vocab, {}, {}, options, true);
  EXPECT_EQ(Encode(*separate,
                   "a\xC3\xA9\xC3\xA9"
                   "a"),
            (Ids{1, 0, 0, 1}));
}

TEST(BpeModelTest, StrictMergesMustNameTokens) {
  EXPECT_FALSE(BpeModel::Create(Vocab(), {{"a", "x"}}, {}, {}, true).ok());
  EXPECT_TRUE(BpeModel::Create(Vocab(), {{"a", "x"}}, {}, {}, false).ok());
}

TEST(BpeModelTest, SharedCacheGivesTheSameIdsFromManyThreads) {
  auto m = BpeModel::Create(Vocab(), {{"a", "b"}, {"ab", "c"}, {"b", "c"}}, {}, {}, true);
  ASSERT_TRUE(m.ok());
  const std::vector<std::string> words = {"abc", "abab", "cab", "bcbc", "aabbcc", "cba"};
  std::vector<Ids> expected;
  for (const auto& w : words) expected.push_back(Encode(*m, w));
  std::vector<std::thread> threads;
  std::vector<int> failures(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) {
        size_t k = (i * 7 + t) % words.size();
        if (Encode(*m, words[k] + std::string(i % 3, 'a')) !=
            Encode(*m, words[k] + std::string(i % 3, 'a'))) {
          ++failures[t];
        }
        if (Encode(*m, words[k]) != expected[k]) ++failures[t];
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures, (std::vector<int>{0, 0, 0, 0}));
}

}  // namespace
}  // namespace kiln::text
