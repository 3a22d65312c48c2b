// Base64 (RFC 4648, the standard alphabet with '=' padding), as the predict API carries data.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace kiln {

std::string Base64Encode(std::string_view bytes);
// The decoded bytes, or nullopt when `text` is not base64: a character outside the alphabet, a
// length that is not a multiple of 4, or padding anywhere but at the end. ASCII whitespace
// (line breaks of MIME-wrapped text) is skipped.
std::optional<std::string> Base64Decode(std::string_view text);

}  // namespace kiln
