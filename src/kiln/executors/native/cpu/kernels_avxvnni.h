// The packed quantized matrix multiply built with AVX-VNNI (kernels_avxvnni.cc), called by
// kernels.cc only when the path is Isa::kAvxVnni, which SelectIsa gives only on a CPU that runs
// it. Each is avx2::PackedGemm* with vpdpbusd for vpmaddubsw + vpmaddwd: the same int32 sums, so
// bitwise the same results.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kiln/executors/native/cpu/kernels.h"

namespace kiln::native::cpu::avxvnni {

// As avx2::PackedGemm (kernels_avx2.h), with the same results.
void PackedGemm(WeightType type, const uint8_t* w, int64_t g_begin, int64_t g_end, int64_t n,
                const BlockQ8* x, int64_t rows, int64_t k, float* y, int64_t y_stride);

}  // namespace kiln::native::cpu::avxvnni
