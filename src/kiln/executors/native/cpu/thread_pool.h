// ThreadPool: the native runtime's compute threads. One pool per executor, sized to the cores
// it is given; the thread that calls ParallelFor takes part, so a pool of n runs n - 1 workers.
// Workers spin briefly between the many short jobs of one forward pass, then sleep, so an idle
// server leaves the cores to the HTTP threads.
#pragma once

#include <cstdint>
#include <functional>

namespace kiln::native::cpu {

class ThreadPool {
 public:
  explicit ThreadPool(int num_threads);  // num_threads >= 1, the caller included
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  // Splits [0, n) into one contiguous range per thread (fewer when n is small) and runs
  // fn(begin, end) on each; returns when all are done. Not reentrant: fn must not call
  // ParallelFor.
  void ParallelFor(int64_t n, const std::function<void(int64_t begin, int64_t end)>& fn);

  // Like ParallelFor, for items of uneven cost: the threads claim [i, i + grain) in turn, each
  // taking the next range as it finishes one, so no thread waits long on another. Which thread
  // runs an item is not fixed; fn must give the same result wherever it runs.
  void ParallelForDynamic(int64_t n, int64_t grain,
                          const std::function<void(int64_t begin, int64_t end)>& fn);

 private:
  struct State;
  int num_threads_;
  State* state_;
};

}  // namespace kiln::native::cpu
