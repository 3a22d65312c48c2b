// Minimal logging to stderr: one line per call, with time and level. Thread-safe.
#pragma once

#include <string_view>

namespace kiln {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// Messages below this level are dropped (default kInfo; KILN_LOG_LEVEL=debug|info|warning|error).
void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();

void Log(LogLevel level, std::string_view message);
inline void LogInfo(std::string_view m) { Log(LogLevel::kInfo, m); }
inline void LogWarning(std::string_view m) { Log(LogLevel::kWarning, m); }
inline void LogError(std::string_view m) { Log(LogLevel::kError, m); }

}  // namespace kiln
