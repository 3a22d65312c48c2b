#include "kiln/executors/native/weight_arena.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>

namespace kiln::native {

namespace {
constexpr size_t kHugePage = size_t{2} << 20;
}  // namespace

Result<std::shared_ptr<WeightArena>> WeightArena::Create(size_t capacity) {
  // Map one huge page more than needed, so the arena can start on a huge-page boundary.
  const size_t mapped = (capacity + 2 * kHugePage - 1) / kHugePage * kHugePage;
  void* p = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    return Status::Unavailable("cannot reserve " + std::to_string(mapped >> 20) +
                               " MiB for the model's weights: " + std::strerror(errno));
  }
  uint8_t* base = static_cast<uint8_t*>(p);
  uint8_t* aligned = reinterpret_cast<uint8_t*>(
      (reinterpret_cast<uintptr_t>(base) + kHugePage - 1) / kHugePage * kHugePage);
  // Advice only: without transparent huge pages the arena still works, on small pages.
  madvise(aligned, mapped - static_cast<size_t>(aligned - base), MADV_HUGEPAGE);
  return std::shared_ptr<WeightArena>(new WeightArena(base, mapped, aligned, capacity));
}

WeightArena::~WeightArena() { munmap(base_, mapped_); }

uint8_t* WeightArena::Allocate(size_t bytes) {
  const size_t start = (used_ + 63) / 64 * 64;
  if (start + bytes > capacity_) return nullptr;
  used_ = start + bytes;
  return start_ + start;
}

}  // namespace kiln::native
