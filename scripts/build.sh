#!/usr/bin/env bash
# Configures and builds Kiln in $KILN_BUILD_DIR (default build/). Extra arguments go to cmake's
# configure step. KILN_WERROR=ON (set by CI) turns warnings into errors.
source "$(dirname "$0")/common.sh"

log "Build: configuring in $KILN_BUILD_DIR"
cmake -S "$KILN_ROOT" -B "$KILN_BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DKILN_DEPS_DIR="$KILN_DEPS_DIR" -DKILN_WERROR="${KILN_WERROR:-OFF}" "$@" >/dev/null
log "Build: compiling ($(nproc) jobs)"
cmake --build "$KILN_BUILD_DIR" -j "$(nproc)"
