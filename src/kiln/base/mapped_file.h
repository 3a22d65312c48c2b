// MappedFile: a read-only memory map of a whole file, owned for its lifetime.
//
// Model weights are read through views into the map, so a 10 GB file costs address space, not
// memory. An empty file maps to an empty span (mmap of length 0 is not allowed).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "kiln/base/status.h"

namespace kiln {

class MappedFile {
 public:
  static Result<MappedFile> Open(const std::string& path);

  MappedFile() = default;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  const std::string& path() const { return path_; }

 private:
  void Release();
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Reads a whole file into a string (for small text files: configs, templates).
Result<std::string> ReadFileToString(const std::string& path);
// Writes `contents` to `path`, replacing it.
Status WriteStringToFile(const std::string& path, std::string_view contents);

}  // namespace kiln
