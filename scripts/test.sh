#!/usr/bin/env bash
# Runs every test: installs what is missing, builds everything (warnings are errors), runs the C++
# unit tests (ctest), the Kubernetes operator's tests (Go, on a real kube-apiserver and etcd), the
# Python tests that compare Kiln with reference implementations (pytest),
# the engine and server tests again under ThreadSanitizer, and a short run of each fuzz target under
# AddressSanitizer and UBSan.
#
# KILN_FUZZ_SECONDS: seconds per fuzz target (default 15; 0 skips fuzzing).
# KILN_FUZZ_SEED: libFuzzer seed for that run (default 1, so a commit's run can be repeated input
# for input; longer exploration is `bash scripts/fuzz.sh 600` with no seed).
source "$(dirname "$0")/common.sh"

bash "$KILN_ROOT/scripts/setup.sh"
bash "$KILN_ROOT/scripts/build.sh"

log "Tests: clang-format (the .clang-format at the root)"
(cd "$KILN_ROOT" && git ls-files 'src/*.cc' 'src/*.h' 'src/*.cu' 'tests/*.cc' 'tests/*.h' |
  xargs clang-format --dry-run -Werror)

# Tests that need the default model's GGUF find it here.
KILN_SMOLLM2_GGUF="$(bash "$KILN_ROOT/scripts/fetch_default_model.sh")"
export KILN_SMOLLM2_GGUF

log "Tests: C++ unit tests (ctest)"
ctest --test-dir "$KILN_BUILD_DIR" --output-on-failure -j "$(nproc)"

log "Tests: the Kubernetes operator (envtest on kube-apiserver and etcd, helm lint)"
bash "$KILN_ROOT/scripts/test_operator.sh"

bash "$KILN_ROOT/scripts/tsan.sh"

log "Tests: Python comparison tests (pytest)"
KILN_HOME_FOR_TESTS="$(mktemp -d)"
trap 'rm -rf "$KILN_HOME_FOR_TESTS"' EXIT
KILN_HOME="$KILN_HOME_FOR_TESTS" "$KILN_VENV/bin/python" -m pytest -q -p no:cacheprovider \
  -rs "$KILN_ROOT/tests/python"

FUZZ_SECONDS="${KILN_FUZZ_SECONDS:-15}"
if [ "$FUZZ_SECONDS" != 0 ]; then
  KILN_FUZZ_SEED="${KILN_FUZZ_SEED:-1}" bash "$KILN_ROOT/scripts/fuzz.sh" "$FUZZ_SECONDS"
fi
log "Tests: all passed"
