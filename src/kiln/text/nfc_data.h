// Unicode tables behind ToNfc (nfc.h). Every array is sorted by its first field.
#pragma once

#include <cstddef>
#include <cstdint>

namespace kiln::text::nfc_data {

struct CodeRange {
  uint32_t first, last;
};
struct ClassRange {
  uint32_t first, last;
  uint8_t combining_class;
};
struct Decomposition {
  uint32_t code_point;
  uint16_t offset, length;  // into kDecompositionPool
};
struct Composition {
  uint64_t pair;  // first << 32 | second
  uint32_t composite;
};

extern const CodeRange kUnsafeRanges[];
extern const size_t kUnsafeRangesCount;
extern const ClassRange kCombiningClasses[];
extern const size_t kCombiningClassesCount;
extern const uint32_t kDecompositionPool[];
extern const size_t kDecompositionPoolCount;
extern const Decomposition kDecompositions[];
extern const size_t kDecompositionsCount;
extern const Composition kCompositions[];
extern const size_t kCompositionsCount;

}  // namespace kiln::text::nfc_data
