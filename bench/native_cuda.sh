#!/usr/bin/env bash
# The vllm runtime's CUDA path on a GPU machine: its tests (the kernels and whole models against
# the CPU path), then decode throughput at batch 1 and 64 (tests/tools/native_cuda_bench.cc).
#
#   bash bench/native_cuda.sh [BUILD_DIR] [-- bench arguments]
#
# BUILD_DIR (default build) holds a build with the CUDA kernels: scripts/build.sh makes one once
# scripts/install_cuda.sh (part of setup) has installed nvcc. The figures in README.md came from
#   bash bench/native_cuda.sh build -- --steps 16 --batches 1,8,64
# Logs go to $OUT when it is set, else to BUILD_DIR.
set -uo pipefail
build=${1:-build}
shift || true
[ "${1:-}" = "--" ] && shift
logs=${OUT:-$build}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv
"$build/tests/kiln_native_cuda_tests" 2>&1 | tee "$logs/cuda_tests.log" | grep -E "^\[  (FAILED|PASSED|SKIPPED) |Failure|error|Expected|Which is|worst" | head -60
tests=${PIPESTATUS[0]}
"$build/tests/native_cuda_bench" "$@" 2>&1 | tee "$logs/cuda_bench.log"
bench=${PIPESTATUS[0]}
echo "tests exit $tests, bench exit $bench"
[ "$tests" = 0 ] && [ "$bench" = 0 ]
