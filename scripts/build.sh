#!/usr/bin/env bash
# Configures and builds Kiln in $KILN_BUILD_DIR (default build/): the targets named as arguments
# (e.g. `kiln`, the server binary), or everything. run.sh and test.sh configure the same way, so
# neither rebuilds what the other built.
#
# KILN_WERROR  warnings are errors (default ON: the toolchain is pinned, and one setting for every
#              script keeps one configuration)
# KILN_CMAKE_ARGS  extra arguments for cmake's configure step
source "$(dirname "$0")/common.sh"

log "Build: configuring in $KILN_BUILD_DIR"
# shellcheck disable=SC2086
cmake -S "$KILN_ROOT" -B "$KILN_BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DKILN_DEPS_DIR="$KILN_DEPS_DIR" -DKILN_WERROR="${KILN_WERROR:-ON}" ${KILN_CMAKE_ARGS:-} >/dev/null
targets=()
for t in "$@"; do targets+=(--target "$t"); done
log "Build: compiling ${*:-everything} ($(nproc) jobs)"
cmake --build "$KILN_BUILD_DIR" -j "$(nproc)" "${targets[@]}"
