#!/usr/bin/env bash
# The main job: install what serving needs, build the server binary, put the default model in
# the model store and serve its GGUF on the vllm runtime with the OpenAI-compatible API on
# KILN_HOST:KILN_PORT (default 127.0.0.1:8080) until stopped. The file carries no sampling
# settings, so requests that name none are greedy, as the model's GenAI folder asks (override
# with a request's own fields, or more flags after `run.sh`). Builds only the `kiln` target,
# configured as test.sh configures it, so running one after the other rebuilds nothing.
source "$(dirname "$0")/common.sh"

bash "$KILN_ROOT/scripts/install_system.sh"
bash "$KILN_ROOT/scripts/install_onnxruntime.sh"
bash "$KILN_ROOT/scripts/install_cuda.sh"  # the vllm runtime's GPU kernels (--device cuda)
bash "$KILN_ROOT/scripts/build.sh" kiln
bash "$KILN_ROOT/scripts/install_model.sh"
exec "$KILN_BUILD_DIR/src/kiln/kiln" serve \
  --model "$KILN_HOME/models/smollm2-135m-instruct.gguf" \
  --served-model-name smollm2-135m-instruct \
  --override-generation-config '{"temperature": 0}' \
  --host "${KILN_HOST:-127.0.0.1}" --port "${KILN_PORT:-8080}" "$@"
