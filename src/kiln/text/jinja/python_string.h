// Python str operations on UTF-8 strings, for the methods and filters that chat templates call:
// str.strip/split/upper/title/..., repr(str), len(str) and indexing by code point.
// Strings are assumed to be UTF-8; invalid bytes are treated as single code points.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::jinja {

std::vector<char32_t> DecodeUtf8(std::string_view s);
void AppendUtf8(std::string& out, char32_t c);
std::string EncodeUtf8(const std::vector<char32_t>& cps);
size_t CodePointCount(std::string_view s);

bool IsPythonSpace(char32_t c);
char32_t ToUpper(char32_t c);
char32_t ToLower(char32_t c);
bool IsAlnum(char32_t c);  // Python's \w minus '_'

std::string PyUpper(std::string_view s);
std::string PyLower(std::string_view s);
std::string PyTitle(std::string_view s);       // str.title()
std::string PyCapitalize(std::string_view s);  // str.capitalize()
std::string PyStrip(std::string_view s, const std::optional<std::string>& chars, bool left,
                    bool right);
// str.split(sep, maxsplit); no sep splits on runs of whitespace.
std::vector<std::string> PySplit(std::string_view s, const std::optional<std::string>& sep,
                                 int64_t maxsplit);
std::vector<std::string> PyRSplit(std::string_view s, const std::optional<std::string>& sep,
                                  int64_t maxsplit);
std::vector<std::string> PySplitLines(std::string_view s, bool keepends);
std::string PyReplace(std::string_view s, std::string_view old, std::string_view with,
                      int64_t count);
// Count of non-overlapping occurrences; Python counts len+1 for an empty needle.
int64_t PyCount(std::string_view s, std::string_view needle);
// Index in code points of the first occurrence, or -1.
int64_t PyFind(std::string_view s, std::string_view needle, bool reverse);
std::string PyStringRepr(std::string_view s);
// json.dumps of a str; ensure_ascii escapes everything beyond ASCII as \\uXXXX.
std::string JsonQuote(std::string_view s, bool ensure_ascii = false);

}  // namespace kiln::jinja
