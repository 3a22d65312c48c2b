// Limits that keep rendering bounded whatever the template does: each is reported as an error
// instead of exhausting memory, time or the stack.
#pragma once

#include <cstddef>
#include <cstdint>

namespace kiln::jinja {

inline constexpr size_t kMaxStringBytes = 32u << 20;    // any one string, and the output
inline constexpr size_t kMaxListItems = 1u << 20;       // any one list built by the template
inline constexpr int64_t kMaxRange = 100000;            // range(), as jinja2's sandbox allows
inline constexpr int64_t kMaxLoopIterations = 1000000;  // all loop bodies in one render
inline constexpr int kMaxCallDepth = 48;                // nested macro calls

}  // namespace kiln::jinja
