#include "kiln/base/digest.h"

#include <openssl/evp.h>

#include <cstdio>
#include <vector>

namespace kiln {

struct Digest::Context {
  EVP_MD_CTX* md = nullptr;
  ~Context() { EVP_MD_CTX_free(md); }
};

Digest::Digest(Kind kind) : ctx_(std::make_unique<Context>()) {
  ctx_->md = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx_->md, kind == Kind::kSha256 ? EVP_sha256() : EVP_sha1(), nullptr);
}

Digest::~Digest() = default;
Digest::Digest(Digest&&) noexcept = default;
Digest& Digest::operator=(Digest&&) noexcept = default;

void Digest::Update(const void* data, size_t size) { EVP_DigestUpdate(ctx_->md, data, size); }

std::string Digest::HexFinal() {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(ctx_->md, out, &n);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex(2 * n, '0');
  for (unsigned int i = 0; i < n; ++i) {
    hex[2 * i] = kHex[out[i] >> 4];
    hex[2 * i + 1] = kHex[out[i] & 15];
  }
  return hex;
}

std::string Sha256Hex(std::string_view data) {
  Digest d(Digest::Kind::kSha256);
  d.Update(data);
  return d.HexFinal();
}

Result<std::string> Sha256File(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return Status::IoError(path + ": cannot be read");
  Digest d(Digest::Kind::kSha256);
  std::vector<char> buffer(1 << 20);
  size_t n = 0;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), f)) > 0) d.Update(buffer.data(), n);
  const bool failed = std::ferror(f);
  std::fclose(f);
  if (failed) return Status::IoError(path + ": read failed");
  return d.HexFinal();
}

}  // namespace kiln
