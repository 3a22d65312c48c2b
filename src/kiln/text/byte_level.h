// GPT-2's byte-level alphabet: each of the 256 byte values is shown as one printable code point
// (printable Latin-1 bytes as themselves, the rest as U+0100 upwards), so byte-level BPE
// vocabularies store arbitrary bytes as text (a space is "Ġ", a newline "Ċ").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace kiln::text {

// The UTF-8 text of the code point that stands for `byte`.
const std::string& ByteLevelChar(uint8_t byte);

// Maps every byte of `raw` to its alphabet character, appending to `out`.
void ByteLevelEncode(std::string_view raw, std::string* out);

// Maps alphabet text back to raw bytes. Returns false (leaving `out` partly written) if `text`
// holds a code point outside the alphabet.
bool ByteLevelDecode(std::string_view text, std::string* out);

// The byte a SentencePiece byte-fallback token ("<0xE4>") stands for, or -1 for any other text.
int ByteFallbackValue(std::string_view token);

}  // namespace kiln::text
