#!/usr/bin/env bash
# Optional, for tests and benchmarks against ONNX Runtime GenAI's own model builder: installs the
# builder's Python stack (torch, transformers: about 6 GB) in $KILN_CACHE/builder-venv and writes
# the default model as the builder converts it (int4, CPU) to
# $KILN_CACHE/models/smollm2-builder-int4, from the Hugging Face folder `kiln import` makes.
# tests/python/test_builder_folder.py uses that folder when it exists. Safe to run twice.
source "$(dirname "$0")/common.sh"

VENV="$KILN_CACHE/builder-venv"
OUT="$KILN_CACHE/models/smollm2-builder-int4"
if [ -f "$OUT/genai_config.json" ]; then
  log "Builder folder: present in $OUT"
  exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
  log "Builder folder: installing torch, transformers and onnxruntime-genai into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q torch==2.15.0 transformers==5.24.0 accelerate==1.15.0 onnx-ir==1.1.0 \
    onnxruntime==1.32.0 onnxruntime-genai==0.18.0 gguf==0.19.0 safetensors==0.8.0 sentencepiece protobuf
fi
GGUF="$(bash "$KILN_ROOT/scripts/fetch_default_model.sh")"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
"$KILN_BUILD_DIR/src/kiln/kiln" import "$GGUF" "$WORK/hf"
log "Builder folder: running onnxruntime_genai.models.builder (int4, cpu)"
"$VENV/bin/python" -m onnxruntime_genai.models.builder -m "$WORK/hf" -i "$WORK/hf" \
  -o "$WORK/out" -p int4 -e cpu -c "$WORK/cache" --extra_options hf_token=false >"$WORK/log" 2>&1 \
  || { tail -20 "$WORK/log"; exit 1; }
mkdir -p "$(dirname "$OUT")"
mv "$WORK/out" "$OUT"
