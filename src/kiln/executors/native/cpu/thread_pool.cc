#include "kiln/executors/native/cpu/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace kiln::native::cpu {
namespace {

// How long a thread spins before it sleeps: longer than the gap between two kernels of a
// forward pass (so a step never pays a wake-up), short enough that an idle server is idle.
constexpr auto kSpinTime = std::chrono::microseconds(50);

void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

// Spins until done() or kSpinTime passed; returns done().
template <typename Done>
bool SpinUntil(Done done) {
  auto start = std::chrono::steady_clock::now();
  for (int i = 1;; ++i) {
    if (done()) return true;
    CpuRelax();
    if (i % 64 == 0 && std::chrono::steady_clock::now() - start > kSpinTime) return done();
  }
}

}  // namespace

// One job at a time: the caller publishes it by bumping `generation`; every worker runs its
// chunk (maybe none) and decrements `pending`; the caller returns when `pending` reaches zero.
// The job's fields are written before the release increment of `generation` and read after
// the workers' acquire load of it, and are not touched again once a worker has decremented.
struct ThreadPool::State {
  std::vector<std::thread> workers;

  const std::function<void(int64_t, int64_t)>* fn = nullptr;
  int64_t n = 0;
  int chunks = 0;

  std::atomic<uint64_t> generation{0};
  std::atomic<int> pending{0};
  std::atomic<bool> stop{false};

  std::mutex mu;
  std::condition_variable work_cv;  // workers wait here for a new generation or stop
  std::condition_variable done_cv;  // the caller waits here for pending == 0
  int sleeping_workers = 0;         // guarded by mu
  bool caller_sleeping = false;     // guarded by mu

  void RunChunk(int chunk) const {
    if (chunk >= chunks) return;
    int64_t begin = n * chunk / chunks;
    int64_t end = n * (chunk + 1) / chunks;
    (*fn)(begin, end);
  }

  void WorkerLoop(int index) {
    uint64_t seen = 0;
    for (;;) {
      uint64_t current = seen;
      auto changed = [&] {
        current = generation.load(std::memory_order_acquire);
        return current != seen || stop.load(std::memory_order_acquire);
      };
      if (!SpinUntil(changed)) {
        std::unique_lock<std::mutex> lock(mu);
        ++sleeping_workers;
        work_cv.wait(lock, changed);
        --sleeping_workers;
      }
      if (stop.load(std::memory_order_acquire)) return;
      seen = current;
      RunChunk(index);
      if (pending.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lock(mu);
        if (caller_sleeping) done_cv.notify_one();
      }
    }
  }
};

ThreadPool::ThreadPool(int num_threads)
    : num_threads_(std::max(1, num_threads)), state_(new State) {
  for (int i = 1; i < num_threads_; ++i) {
    state_->workers.emplace_back([this, i] { state_->WorkerLoop(i); });
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->stop.store(true, std::memory_order_release);
  }
  state_->work_cv.notify_all();
  for (std::thread& t : state_->workers) t.join();
  delete state_;
}

void ThreadPool::ParallelFor(int64_t n, const std::function<void(int64_t begin, int64_t end)>& fn) {
  if (n <= 0) return;
  int chunks = static_cast<int>(std::min<int64_t>(num_threads_, n));
  if (chunks == 1) {
    fn(0, n);
    return;
  }
  State& s = *state_;
  s.fn = &fn;
  s.n = n;
  s.chunks = chunks;
  s.pending.store(num_threads_ - 1, std::memory_order_relaxed);
  {
    // Under the mutex, so a worker that is about to sleep sees the new generation.
    std::lock_guard<std::mutex> lock(s.mu);
    s.generation.fetch_add(1, std::memory_order_release);
    if (s.sleeping_workers > 0) s.work_cv.notify_all();
  }
  s.RunChunk(0);
  auto done = [&] { return s.pending.load(std::memory_order_acquire) == 0; };
  if (!SpinUntil(done)) {
    std::unique_lock<std::mutex> lock(s.mu);
    s.caller_sleeping = true;
    s.done_cv.wait(lock, done);
    s.caller_sleeping = false;
  }
}

void ThreadPool::ParallelForDynamic(int64_t n, int64_t grain,
                                    const std::function<void(int64_t begin, int64_t end)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  if (num_threads_ == 1 || n <= grain) {
    fn(0, n);
    return;
  }
  std::atomic<int64_t> next{0};
  ParallelFor(num_threads_, [&](int64_t, int64_t) {
    for (;;) {
      const int64_t begin = next.fetch_add(grain, std::memory_order_relaxed);
      if (begin >= n) return;
      fn(begin, std::min(n, begin + grain));
    }
  });
}

}  // namespace kiln::native::cpu
