#!/usr/bin/env bash
# The main job: set up and build Kiln, import the default model into the model store, and show
# what the store holds.
source "$(dirname "$0")/common.sh"

bash "$KILN_ROOT/scripts/setup.sh"
bash "$KILN_ROOT/scripts/install_model.sh"
DEST="$KILN_HOME/models/smollm2-135m-instruct"
log "Model store: $DEST"
ls -l "$DEST"
"$KILN_BUILD_DIR/src/kiln/kiln" inspect "$DEST"
