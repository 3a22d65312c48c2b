#!/usr/bin/env bash
# Installs the CUDA compiler the vllm runtime's GPU kernels are built with into $KILN_CACHE/cuda:
# nvcc, its front end (nvvm), headers and the static CUDA runtime, from NVIDIA's PyPI wheels
# (no driver: a Kiln built with them runs on machines without a GPU, on the CPU). Safe to run
# twice. scripts/build.sh builds the kernels whenever this toolchain is present.
source "$(dirname "$0")/common.sh"

PREFIX="$KILN_CACHE/cuda"
STAMP="$PREFIX/.installed-$CUDA_NVCC_VERSION"
if [ -f "$STAMP" ]; then
  log "CUDA compiler $CUDA_NVCC_VERSION: present in $PREFIX"
  exit 0
fi
rm -rf "$PREFIX"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
log "CUDA compiler: downloading nvcc $CUDA_NVCC_VERSION and its parts from PyPI"
python3 -m pip download -q --no-deps --only-binary :all: --python-version 3.11 \
  --platform manylinux_2_17_x86_64 --platform manylinux_2_12_x86_64 -d "$WORK/wheels" \
  "nvidia-cuda-nvcc==$CUDA_NVCC_VERSION" "nvidia-nvvm==$CUDA_NVVM_VERSION" \
  "nvidia-cuda-crt==$CUDA_CRT_VERSION" "nvidia-cuda-runtime==$CUDA_RUNTIME_VERSION" \
  "nvidia-cuda-cccl==$CUDA_CCCL_VERSION"
for wheel in "$WORK"/wheels/*.whl; do unzip -q -o "$wheel" -d "$WORK/x"; done
mkdir -p "$PREFIX"
cp -r "$WORK"/x/nvidia/cu13/. "$PREFIX/"
# nvcc looks for lib64 and links -lcudart_static; CMake also wants libcudart.so to exist.
ln -sfn lib "$PREFIX/lib64"
ln -sf libcudart.so.13 "$PREFIX/lib/libcudart.so"
"$PREFIX/bin/nvcc" --version | tail -n 2 >&2
touch "$STAMP"
log "CUDA compiler $CUDA_NVCC_VERSION: installed in $PREFIX"
