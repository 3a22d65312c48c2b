#include "kiln/catalog/pull_progress.h"

#include <unistd.h>

#include <algorithm>

namespace kiln::catalog {
namespace {

std::string HumanBytes(int64_t n) {
  char text[32];
  if (n >= (int64_t{1} << 30)) {
    std::snprintf(text, sizeof(text), "%.2f GB", n / 1e9);
  } else if (n >= (1 << 20)) {
    std::snprintf(text, sizeof(text), "%.1f MB", n / 1e6);
  } else {
    std::snprintf(text, sizeof(text), "%.1f kB", n / 1e3);
  }
  return text;
}

}  // namespace

PullProgress::Style PullProgress::StyleFor(std::FILE* out) {
  return isatty(fileno(out)) ? Style::kBar : Style::kLines;
}

PullProgress::PullProgress(std::FILE* out, Style style, std::string name, int files,
                           int64_t total_bytes)
    : out_(out), style_(style), name_(std::move(name)), files_(files), total_(total_bytes) {
  start_ = last_draw_ = std::chrono::steady_clock::now();
}

void PullProgress::FileStarted(const std::string& path, int64_t size, int64_t resumed_from) {
  std::lock_guard<std::mutex> lock(mu_);
  done_ += resumed_from;
  start_bytes_ += resumed_from;
  if (style_ != Style::kLines) return;
  std::string line = "fetching " + path;
  if (size >= 0) line += " (" + HumanBytes(size) + ")";
  if (resumed_from > 0) line += ", resuming at byte " + std::to_string(resumed_from);
  std::fprintf(out_, "%s\n", line.c_str());
  std::fflush(out_);
}

void PullProgress::Bytes(int64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  done_ += n;
  Draw(false);
}

void PullProgress::Restarted(int64_t dropped) {
  std::lock_guard<std::mutex> lock(mu_);
  done_ -= dropped;
}

void PullProgress::FileDone(const std::string& path, const std::string& checked) {
  std::lock_guard<std::mutex> lock(mu_);
  ++files_done_;
  if (style_ == Style::kLines) {
    std::fprintf(out_, "fetched %s (%s)\n", path.c_str(), checked.c_str());
    std::fflush(out_);
  }
  Draw(true);
}

void PullProgress::Message(const std::string& line) {
  std::lock_guard<std::mutex> lock(mu_);
  if (style_ == Style::kQuiet) return;
  if (style_ == Style::kBar) std::fprintf(out_, "\r\033[K");
  std::fprintf(out_, "%s\n", line.c_str());
  std::fflush(out_);
  Draw(true);
}

void PullProgress::Finish() {
  std::lock_guard<std::mutex> lock(mu_);
  if (style_ == Style::kBar) {
    Draw(true);
    std::fprintf(out_, "\n");
    std::fflush(out_);
  }
}

void PullProgress::Draw(bool force) {
  if (style_ != Style::kBar) return;
  const auto now = std::chrono::steady_clock::now();
  if (!force && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  const double seconds = std::chrono::duration<double>(now - start_).count();
  const double rate = seconds > 0 ? (done_ - start_bytes_) / seconds : 0;
  constexpr int kWidth = 24;
  std::string bar;
  std::string percent;
  if (total_ > 0) {
    const double f = std::min(1.0, static_cast<double>(done_) / total_);
    const int filled = static_cast<int>(f * kWidth);
    bar = "[" + std::string(filled, '#') + std::string(kWidth - filled, '.') + "] ";
    char p[16];
    std::snprintf(p, sizeof(p), "%3d%% ", static_cast<int>(f * 100));
    percent = p;
  }
  std::fprintf(out_, "\r\033[Kpulling %s %s%s%s%s  %s/s  %d/%d files", name_.c_str(), bar.c_str(),
               percent.c_str(), HumanBytes(done_).c_str(),
               total_ > 0 ? (" / " + HumanBytes(total_)).c_str() : "",
               HumanBytes(static_cast<int64_t>(rate)).c_str(), files_done_, files_);
  std::fflush(out_);
}

}  // namespace kiln::catalog
