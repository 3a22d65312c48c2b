// WeightArena: one block of anonymous memory that holds a model's weights as the kernels read
// them, on huge pages where the kernel grants them.
//
// Decode streams every weight once per step. Read in place from a file's map, the weights sit on
// whatever pages the page cache holds (4 KiB ones, mostly, shared with other readers of the
// file); copied here at load, they are the process's own, on 2 MiB pages (MADV_HUGEPAGE) in one
// range, and free to take whatever layout the kernels read best.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "kiln/base/status.h"

namespace kiln::native {

class WeightArena {
 public:
  // Reserves `capacity` bytes (nothing is touched until written).
  static Result<std::shared_ptr<WeightArena>> Create(size_t capacity);
  ~WeightArena();
  WeightArena(const WeightArena&) = delete;
  WeightArena& operator=(const WeightArena&) = delete;

  // `bytes` of the arena, 64-byte aligned; null when it would not fit.
  uint8_t* Allocate(size_t bytes);
  size_t used() const { return used_; }

 private:
  WeightArena(uint8_t* base, size_t mapped, uint8_t* start, size_t capacity)
      : base_(base), mapped_(mapped), start_(start), capacity_(capacity) {}
  uint8_t* base_;  // the mapping
  size_t mapped_;
  uint8_t* start_;  // its first huge-page boundary

  size_t capacity_;
  size_t used_ = 0;
};

}  // namespace kiln::native
