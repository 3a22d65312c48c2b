// Streaming SHA-256 and SHA-1 (OpenSSL's EVP), as lowercase hex: model files are checked against
// the SHA-256 a catalog, the Hugging Face Hub (LFS files) or an OCI manifest states, and against
// the Hub's git blob ids (SHA-1 of "blob <size>\0" + content) for small files.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "kiln/base/status.h"

namespace kiln {

class Digest {
 public:
  enum class Kind { kSha256, kSha1 };
  explicit Digest(Kind kind);
  ~Digest();
  Digest(Digest&&) noexcept;
  Digest& operator=(Digest&&) noexcept;

  void Update(const void* data, size_t size);
  void Update(std::string_view data) { Update(data.data(), data.size()); }
  // The digest as lowercase hex; the object is spent afterwards.
  std::string HexFinal();

 private:
  struct Context;
  std::unique_ptr<Context> ctx_;
};

std::string Sha256Hex(std::string_view data);
// The SHA-256 of a file's contents; IoError naming the file when it cannot be read.
Result<std::string> Sha256File(const std::string& path);

}  // namespace kiln
