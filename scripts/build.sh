#!/usr/bin/env bash
# Configures and builds Kiln in $KILN_BUILD_DIR (default build/): the targets named as arguments
# (e.g. `kiln`, the server binary), or everything. run.sh and test.sh configure the same way, so
# neither rebuilds what the other built.
#
# KILN_WERROR  warnings are errors (default ON: the toolchain is pinned, and one setting for every
#              script keeps one configuration)
# KILN_CMAKE_ARGS  extra arguments for cmake's configure step
# KILN_CUDA    build the vllm runtime's CUDA kernels: auto (default: when scripts/install_cuda.sh
#              installed the compiler), ON or OFF
source "$(dirname "$0")/common.sh"

cuda_args=(-DKILN_CUDA=OFF)
nvcc="$KILN_CACHE/cuda/bin/nvcc"
case "${KILN_CUDA:-auto}" in
  auto) [ -x "$nvcc" ] && cuda_args=(-DKILN_CUDA=ON "-DCMAKE_CUDA_COMPILER=$nvcc") ;;
  ON | on | 1) cuda_args=(-DKILN_CUDA=ON "-DCMAKE_CUDA_COMPILER=$nvcc") ;;
esac

log "Build: configuring in $KILN_BUILD_DIR"
# shellcheck disable=SC2086
cmake -S "$KILN_ROOT" -B "$KILN_BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DKILN_DEPS_DIR="$KILN_DEPS_DIR" -DKILN_WERROR="${KILN_WERROR:-ON}" "${cuda_args[@]}" \
  ${KILN_CMAKE_ARGS:-} >/dev/null
targets=()
for t in "$@"; do targets+=(--target "$t"); done
log "Build: compiling ${*:-everything} ($(nproc) jobs)"
cmake --build "$KILN_BUILD_DIR" -j "$(nproc)" "${targets[@]}"
