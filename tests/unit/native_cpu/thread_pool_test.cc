#include "kiln/executors/native/cpu/thread_pool.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace kiln::native::cpu {
namespace {

// Runs ParallelFor(n) and checks that every index is visited exactly once, by at most
// num_threads non-empty contiguous ranges.
void ExpectCoversOnce(ThreadPool& pool, int64_t n) {
  std::unique_ptr<std::atomic<int>[]> visits(new std::atomic<int>[std::max<int64_t>(n, 1)]);
  for (int64_t i = 0; i < n; ++i) visits[i].store(0);
  std::mutex mu;
  std::vector<std::pair<int64_t, int64_t>> ranges;
  pool.ParallelFor(n, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) visits[i].fetch_add(1, std::memory_order_relaxed);
    std::lock_guard<std::mutex> lock(mu);
    ranges.emplace_back(begin, end);
  });
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_EQ(visits[i].load(), 1) << "index " << i << " of " << n;
  }
  EXPECT_LE(static_cast<int64_t>(ranges.size()), std::min<int64_t>(pool.num_threads(), n));
  for (const auto& [begin, end] : ranges) EXPECT_LT(begin, end) << "empty range for n=" << n;
  EXPECT_TRUE(n > 0 || ranges.empty());
}

TEST(ThreadPoolTest, CoversEveryIndexExactlyOnce) {
  for (int threads : {1, 2, 3, 4, 8}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.num_threads(), threads);
    for (int64_t n : {0, 1, 2, 3, 4, 5, 7, 9, 100, 961, 100000}) {
      SCOPED_TRACE(testing::Message() << threads << " threads, n=" << n);
      ExpectCoversOnce(pool, n);
    }
  }
}

// ParallelForDynamic: every index exactly once, in ranges of at most `grain`, whatever the
// grain; with uneven work every thread still takes part.
TEST(ThreadPoolTest, DynamicCoversEveryIndexExactlyOnce) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 2, 5, 17, 100, 961}) {
      for (int64_t grain : {0, 1, 3, 16, 1000}) {
        SCOPED_TRACE(testing::Message() << threads << " threads, n=" << n << ", grain " << grain);
        std::unique_ptr<std::atomic<int>[]> visits(new std::atomic<int>[std::max<int64_t>(n, 1)]);
        for (int64_t i = 0; i < n; ++i) visits[i].store(0);
        std::atomic<bool> too_long{false};
        pool.ParallelForDynamic(n, grain, [&](int64_t begin, int64_t end) {
          if (begin >= end || (end - begin > std::max<int64_t>(1, grain) && end - begin != n)) {
            too_long = true;
          }
          for (int64_t i = begin; i < end; ++i) visits[i].fetch_add(1);
        });
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(visits[i].load(), 1) << "index " << i;
        EXPECT_FALSE(too_long.load());
      }
    }
  }
}

TEST(ThreadPoolTest, DynamicSpreadsUnevenWork) {
  ThreadPool pool(2);
  // Item 0 holds its thread until every other item is done, so the other thread must take them
  // all: under a fixed split the first thread's half would wait behind item 0.
  constexpr int64_t kItems = 64;
  std::atomic<int64_t> done{0};
  pool.ParallelForDynamic(kItems, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      if (i == 0) {
        // Bounded, so a pool that splits evenly fails the test instead of hanging it.
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (done.load() < kItems - 1 && std::chrono::steady_clock::now() < deadline) {
          std::this_thread::yield();
        }
      } else {
        done.fetch_add(1);
      }
    }
  });
  EXPECT_EQ(done.load(), kItems - 1);
}

TEST(ThreadPoolTest, ManyShortJobsInARow) {
  ThreadPool pool(4);
  std::atomic<int64_t> total{0};
  for (int job = 0; job < 2000; ++job) {
    pool.ParallelFor(job % 13, [&](int64_t begin, int64_t end) {
      total.fetch_add(end - begin, std::memory_order_relaxed);
    });
  }
  int64_t expected = 0;
  for (int job = 0; job < 2000; ++job) expected += job % 13;
  EXPECT_EQ(total.load(), expected);
}

TEST(ThreadPoolTest, JobsAfterTheWorkersFellAsleep) {
  ThreadPool pool(3);
  for (int job = 0; job < 10; ++job) {
    // Longer than the workers spin, so each job has to wake them.
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    ExpectCoversOnce(pool, 1000 + job);
  }
}

TEST(ThreadPoolTest, EachRangeRunsOnItsOwnThread) {
  ThreadPool pool(3);
  std::mutex mu;
  std::vector<std::thread::id> ids;
  pool.ParallelFor(3, [&](int64_t, int64_t) {
    std::lock_guard<std::mutex> lock(mu);
    ids.push_back(std::this_thread::get_id());
  });
  ASSERT_EQ(ids.size(), 3u);
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(std::unique(ids.begin(), ids.end()), ids.end());
  EXPECT_NE(std::find(ids.begin(), ids.end(), std::this_thread::get_id()), ids.end())
      << "the calling thread takes part";
}

double ProcessCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_utime.tv_sec + usage.ru_stime.tv_sec +
         1e-6 * (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
}

TEST(ThreadPoolTest, IdleWorkersUseNoCpu) {
  ThreadPool pool(4);
  ExpectCoversOnce(pool, 1000);
  double before = ProcessCpuSeconds();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  // Three workers spinning through the wait would burn up to 0.9 s; sleeping ones, nothing.
  EXPECT_LT(ProcessCpuSeconds() - before, 0.05);
}

TEST(ThreadPoolTest, DestroysAnIdlePool) {
  for (int i = 0; i < 20; ++i) {
    ThreadPool pool(1 + i % 4);
    if (i % 2 == 0) ExpectCoversOnce(pool, 10);
  }
}

}  // namespace
}  // namespace kiln::native::cpu
