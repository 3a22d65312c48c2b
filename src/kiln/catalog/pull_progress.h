// What a pull shows while it runs: on a terminal one line redrawn in place (percent, bytes,
// speed, files done); otherwise plain lines, one when a file starts and one when it is checked.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>

namespace kiln::catalog {

class PullProgress {
 public:
  enum class Style { kBar, kLines, kQuiet };
  // kBar when `out` is a terminal, else kLines.
  static Style StyleFor(std::FILE* out);

  PullProgress(std::FILE* out, Style style, std::string name, int files, int64_t total_bytes);

  void FileStarted(const std::string& path, int64_t size, int64_t resumed_from);
  void Bytes(int64_t n);            // thread-safe
  void Restarted(int64_t dropped);  // a server ignored a Range request: those bytes come again
  void FileDone(const std::string& path, const std::string& checked);
  void Message(const std::string& line);
  void Finish();

 private:
  void Draw(bool force);
  std::FILE* out_;
  Style style_;
  std::string name_;
  int files_ = 0, files_done_ = 0;
  int64_t total_ = 0, done_ = 0;
  std::chrono::steady_clock::time_point start_, last_draw_;
  int64_t start_bytes_ = 0;
  std::mutex mu_;
};

}  // namespace kiln::catalog
