// Which instruction-set path the native runtime's CPU kernels take.
//
// The best path the CPU runs is detected at start (cpuid and the OS's saved-register support).
// KILN_CPU_FEATURES=portable|avx2|avx_vnni lowers it, so a machine with AVX-VNNI can run (and
// test) what an AVX2-only machine runs; asking for a path the CPU cannot run is an error.
// avx_vnni is the avx2 path with vpdpbusd in the batched kernel, bitwise the same results.
#pragma once

#include <string>

#include "kiln/base/status.h"

namespace kiln::native::cpu {

enum class Isa { kPortable, kAvx2, kAvxVnni };
const char* IsaName(Isa isa);  // "portable", "avx2", "avx_vnni"

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

// The best path this CPU runs.
Isa BestIsa();
// BestIsa(), lowered by the KILN_CPU_FEATURES environment variable when set. InvalidArgument
// for an unknown name or a path this CPU cannot run.
Result<Isa> SelectIsa();
// Parses "portable" / "avx2" / "avx_vnni".
Result<Isa> ParseIsa(const std::string& name);

}  // namespace kiln::native::cpu
