#include "kiln/executors/native/cpu/features.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define KILN_X86 1
#endif

namespace kiln::native::cpu {
namespace {

#if KILN_X86
struct CpuidRegs {
  uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
};

CpuidRegs Cpuid(uint32_t leaf, uint32_t subleaf) {
  CpuidRegs r;
  if (!__get_cpuid_count(leaf, subleaf, &r.eax, &r.ebx, &r.ecx, &r.edx)) return CpuidRegs{};
  return r;
}

// XCR0: which register states the OS saves on a context switch. Inline assembly, so the file
// needs no -mxsave.
uint64_t Xgetbv0() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

bool Bit(uint32_t reg, int bit) { return (reg >> bit) & 1u; }

CpuFeatures Detect() {
  CpuFeatures f;
  uint32_t max_leaf = Cpuid(0, 0).eax;
  CpuidRegs l1 = Cpuid(1, 0);
  // A CPU's AVX registers are usable only when the OS saves them (OSXSAVE, then XCR0).
  bool os_avx = false, os_avx512 = false;
  if (Bit(l1.ecx, 27)) {
    uint64_t xcr0 = Xgetbv0();
    os_avx = (xcr0 & 0x6) == 0x6;       // SSE and AVX state
    os_avx512 = (xcr0 & 0xe6) == 0xe6;  // plus opmask and the upper ZMM registers
  }
  bool avx = os_avx && Bit(l1.ecx, 28);
  f.fma = avx && Bit(l1.ecx, 12);
  f.f16c = avx && Bit(l1.ecx, 29);
  if (max_leaf >= 7) {
    CpuidRegs l7 = Cpuid(7, 0);
    f.avx2 = avx && Bit(l7.ebx, 5);
    f.avx512f = os_avx512 && Bit(l7.ebx, 16);
    f.avx512bw = f.avx512f && Bit(l7.ebx, 30);
    f.avx512vl = f.avx512f && Bit(l7.ebx, 31);
    f.avx512_vnni = f.avx512f && Bit(l7.ecx, 11);
    if (l7.eax >= 1) f.avx_vnni = avx && Bit(Cpuid(7, 1).eax, 4);
  }
  if (Cpuid(0x80000000u, 0).eax >= 0x80000004u) {
    char brand[49] = {};
    for (uint32_t i = 0; i < 3; ++i) {
      CpuidRegs r = Cpuid(0x80000002u + i, 0);
      std::memcpy(brand + 16 * i, &r.eax, 4);
      std::memcpy(brand + 16 * i + 4, &r.ebx, 4);
      std::memcpy(brand + 16 * i + 8, &r.ecx, 4);
      std::memcpy(brand + 16 * i + 12, &r.edx, 4);
    }
    f.model_name = brand;
    size_t first = f.model_name.find_first_not_of(' ');
    size_t last = f.model_name.find_last_not_of(' ');
    f.model_name = first == std::string::npos ? "" : f.model_name.substr(first, last - first + 1);
  }
  return f;
}
#else
CpuFeatures Detect() { return CpuFeatures{}; }
#endif

}  // namespace

const char* IsaName(Isa isa) {
  switch (isa) {
    case Isa::kPortable:
      return "portable";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvxVnni:
      return "avx_vnni";
    case Isa::kAvx512:
      return "avx512";
  }
  return "unknown";
}

const CpuFeatures& DetectCpuFeatures() {
  static const CpuFeatures features = Detect();
  return features;
}

bool CanRun(Isa isa) {
  const CpuFeatures& f = DetectCpuFeatures();
  const bool avx2 = f.avx2 && f.fma && f.f16c;
  switch (isa) {
    case Isa::kPortable:
      return true;
    case Isa::kAvx2:
      return avx2;
    case Isa::kAvxVnni:
      return avx2 && f.avx_vnni;
    case Isa::kAvx512:
      return avx2 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512_vnni;
  }
  return false;
}

Isa BestIsa() {
  for (Isa isa : {Isa::kAvx512, Isa::kAvxVnni, Isa::kAvx2}) {
    if (CanRun(isa)) return isa;
  }
  return Isa::kPortable;
}

Result<Isa> ParseIsa(const std::string& name) {
  if (name == "portable") return Isa::kPortable;
  if (name == "avx2") return Isa::kAvx2;
  if (name == "avx_vnni") return Isa::kAvxVnni;
  if (name == "avx512") return Isa::kAvx512;
  return Status::InvalidArgument("unknown CPU path '" + name +
                                 "' (expected 'portable', 'avx2', 'avx_vnni' or 'avx512')");
}

Result<Isa> SelectIsa() {
  Isa best = BestIsa();
  const char* env = std::getenv("KILN_CPU_FEATURES");
  if (env == nullptr || env[0] == '\0') return best;
  Result<Isa> wanted = ParseIsa(env);
  if (!wanted.ok()) return wanted.status().WithContext("KILN_CPU_FEATURES");
  if (!CanRun(wanted.value())) {
    return Status::InvalidArgument(std::string("KILN_CPU_FEATURES: this CPU cannot run the '") +
                                   IsaName(wanted.value()) + "' path (best: '" + IsaName(best) +
                                   "')");
  }
  return wanted.value();
}

}  // namespace kiln::native::cpu
