# Shared settings for Kiln's scripts. Source it; it sets paths and a logging helper.
#
# KILN_CACHE  downloads, the Python environment and dependency prefixes, reused across clones
#             (default ~/.cache/kiln)
# KILN_HOME   the model store (default ~/.kiln)
set -euo pipefail

KILN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KILN_CACHE="${KILN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kiln}"
KILN_HOME="${KILN_HOME:-$HOME/.kiln}"
KILN_DEPS_DIR="$KILN_CACHE/deps"
KILN_VENV="$KILN_CACHE/venv"
KILN_BUILD_DIR="${KILN_BUILD_DIR:-$KILN_ROOT/build}"
export KILN_ROOT KILN_CACHE KILN_HOME KILN_DEPS_DIR KILN_VENV KILN_BUILD_DIR

ONNXRUNTIME_VERSION=1.32.0
# The CUDA compiler for the vllm runtime's GPU kernels (scripts/install_cuda.sh): NVIDIA's PyPI
# wheels of CUDA 13.0.
CUDA_NVCC_VERSION=13.0.88
CUDA_NVVM_VERSION=13.0.88
CUDA_CRT_VERSION=13.0.88
CUDA_RUNTIME_VERSION=13.0.96
CUDA_CCCL_VERSION=13.0.85
ONNXRUNTIME_HEADERS_DEB_VERSION=1.21.0+dfsg-1

log() { printf '\033[1m[kiln %s]\033[0m %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# Runs apt-get as root, or through sudo when not root.
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}
