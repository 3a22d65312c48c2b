// Unicode Normalization Form C (canonical decomposition, then canonical composition), as the
// NFC normalizer of Qwen2-style tokenizers requires. Text that NFC cannot change (the usual
// case) is detected by a quick scan and returned unchanged.
#pragma once

#include <string>
#include <string_view>

namespace kiln::text {

// `text` must be valid UTF-8.
std::string ToNfc(std::string_view text);

}  // namespace kiln::text
