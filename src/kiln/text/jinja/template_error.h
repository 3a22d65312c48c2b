// TemplateError: how the Jinja engine unwinds on a syntax or runtime error inside the module.
// It never leaves the module: Template converts it into a Status naming line and column.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>

namespace kiln::jinja {

class TemplateError : public std::runtime_error {
 public:
  explicit TemplateError(std::string message, int line = 0, int column = 0)
      : std::runtime_error(message), message_(std::move(message)), line_(line), column_(column) {}

  const std::string& message() const { return message_; }
  int line() const { return line_; }
  int column() const { return column_; }
  bool located() const { return line_ > 0; }
  void Locate(int line, int column) {
    if (!located()) {
      line_ = line;
      column_ = column;
    }
  }

 private:
  std::string message_;
  int line_;
  int column_;
};

}  // namespace kiln::jinja
