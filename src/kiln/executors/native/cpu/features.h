// Which instruction-set path the native runtime's CPU kernels take.
//
// The best path the CPU runs is detected at start (cpuid and the OS's saved-register support).
// KILN_CPU_FEATURES=portable|avx2|avx_vnni|avx512 picks another one, so a machine with AVX-512
// can run (and test) what an AVX2-only machine runs; asking for a path the CPU cannot run is an
// error. avx_vnni is the avx2 path with vpdpbusd in the quantized matrix multiply; avx512 is
// the avx2 path with that multiply on 512-bit vectors (AVX-512 F, BW, VL and VNNI), 16 outputs
// at a time. The quantized matrix multiply gives bitwise the same results on every path.
#pragma once

#include <string>

#include "kiln/base/status.h"

namespace kiln::native::cpu {

enum class Isa { kPortable, kAvx2, kAvxVnni, kAvx512 };
const char* IsaName(Isa isa);  // "portable", "avx2", "avx_vnni", "avx512"

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512_vnni = false;
  bool avx_vnni = false;
  std::string model_name;  // cpuid brand string
};
const CpuFeatures& DetectCpuFeatures();

// Whether this CPU runs the path (avx512 does not need AVX-VNNI, nor avx_vnni AVX-512).
bool CanRun(Isa isa);
// The best path this CPU runs.
Isa BestIsa();
// BestIsa(), lowered by the KILN_CPU_FEATURES environment variable when set. InvalidArgument
// for an unknown name or a path this CPU cannot run.
Result<Isa> SelectIsa();
// Parses "portable" / "avx2" / "avx_vnni" / "avx512".
Result<Isa> ParseIsa(const std::string& name);

}  // namespace kiln::native::cpu
