#include "kiln/base/log.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <mutex>
#include <string>

namespace kiln {
namespace {

LogLevel LevelFromEnvironment() {
  const char* v = std::getenv("KILN_LOG_LEVEL");
  if (v == nullptr) return LogLevel::kInfo;
  if (std::strcmp(v, "debug") == 0) return LogLevel::kDebug;
  if (std::strcmp(v, "warning") == 0) return LogLevel::kWarning;
  if (std::strcmp(v, "error") == 0) return LogLevel::kError;
  return LogLevel::kInfo;
}

std::atomic<int>& Level() {
  static std::atomic<int> level{static_cast<int>(LevelFromEnvironment())};
  return level;
}

}  // namespace

void SetLogLevel(LogLevel level) { Level() = static_cast<int>(level); }
LogLevel GetLogLevel() { return static_cast<LogLevel>(Level().load()); }

void Log(LogLevel level, std::string_view message) {
  if (static_cast<int>(level) < Level().load()) return;
  static std::mutex mu;
  static const char kNames[] = {'D', 'I', 'W', 'E'};
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()) % 1000;
  std::tm tm;
  gmtime_r(&t, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%H:%M:%S", &tm);
  std::lock_guard lock(mu);
  std::fprintf(stderr, "%s.%03d %c kiln: %.*s\n", stamp, static_cast<int>(ms.count()),
               kNames[static_cast<int>(level)], static_cast<int>(message.size()), message.data());
}

}  // namespace kiln
