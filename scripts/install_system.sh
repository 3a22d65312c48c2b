#!/usr/bin/env bash
# Installs the Debian 12 packages Kiln builds and tests with. Safe to run twice.
source "$(dirname "$0")/common.sh"

# Each package and what it is for (README.md lists the same).
PACKAGES=(
  build-essential      # g++ 12, make
  cmake                # build system (3.25)
  ninja-build          # fast builds
  pkg-config           # finds PCRE2
  libgtest-dev         # unit tests
  nlohmann-json3-dev   # JSON (tokenizer.json, config.json, safetensors headers)
  libpcre2-dev         # Unicode regexes for the tokenizers' pre-tokenizers
  libcli11-dev         # the kiln command line
  libboost1.81-dev     # Boost.Asio and Beast: the asynchronous HTTP server
  libjpeg62-turbo-dev  # /v1/predict image inputs: JPEG
  libpng-dev           #   PNG
  libgif-dev           #   GIF
  libwebp-dev          #   WebP
  libssl-dev           # SHA-256 of model files (OpenSSL's libcrypto)
  libcurl4-openssl-dev # the model store's downloads (https://, the Hugging Face Hub, OCI registries)
  libarchive-dev       # OCI directory layers (.tar.gz)
  docker-registry      # tests: a real OCI registry to pull from
  tmux                 # tests: kiln run in a real terminal
  chromium             # tests: the chat page in a real headless browser (driven by Playwright)
  clang                # libFuzzer targets
  clang-format         # the style check in scripts/test.sh
  libclang-rt-14-dev   # AddressSanitizer / UBSan / libFuzzer runtimes for clang
  python3-venv         # the test and benchmark environment
  unzip                # unpacking the ONNX Runtime wheel
  ca-certificates
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  log "Debian packages: all ${#PACKAGES[@]} present"
  exit 0
fi
log "Debian packages: installing ${missing[*]}"
as_root apt-get update -q
DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q --no-install-recommends "${missing[@]}"
