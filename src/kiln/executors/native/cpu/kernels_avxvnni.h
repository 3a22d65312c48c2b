// The batched kernels built with AVX-VNNI (kernels_avxvnni.cc), called by kernels.cc only when
// the path is Isa::kAvxVnni, which SelectIsa gives only on a CPU that runs it. Each is
// avx2::Gemm* with vpdpbusd for vpmaddubsw + vpmaddwd: the same int32 sums, so bitwise the same
// results.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kiln/executors/native/cpu/kernels.h"

namespace kiln::native::cpu::avxvnni {

void GemmQ8_0(const uint8_t* w, size_t row_bytes, int64_t n_begin, int64_t n_end, const BlockQ8* x,
              int64_t rows, int64_t k, float* y, int64_t y_stride);
void GemmQ4_0(const uint8_t* w, size_t row_bytes, int64_t n_begin, int64_t n_end, const BlockQ8* x,
              int64_t rows, int64_t k, float* y, int64_t y_stride);
void GemmQ4_1(const uint8_t* w, size_t row_bytes, int64_t n_begin, int64_t n_end, const BlockQ8* x,
              int64_t rows, int64_t k, float* y, int64_t y_stride);

}  // namespace kiln::native::cpu::avxvnni
