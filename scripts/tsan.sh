#!/usr/bin/env bash
# Builds the engine and server unit tests (the engine thread, the HTTP server's I/O threads and
# what they share) and the native CPU tests (the compute thread pool, alone and under MatMul) with
# ThreadSanitizer in $KILN_ROOT/build-tsan and runs them; any report fails.
source "$(dirname "$0")/common.sh"

TSAN_DIR="$KILN_ROOT/build-tsan"
log "ThreadSanitizer: building the engine, server and native CPU tests in $TSAN_DIR"
cmake -S "$KILN_ROOT" -B "$TSAN_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DKILN_DEPS_DIR="$KILN_DEPS_DIR" -DKILN_WERROR=ON -DKILN_TSAN=ON >/dev/null
cmake --build "$TSAN_DIR" -j "$(nproc)" --target kiln_engine_tests kiln_server_tests \
  kiln_native_cpu_tests
export TSAN_OPTIONS="halt_on_error=1 exitcode=66 second_deadlock_stack=1"
for t in kiln_engine_tests kiln_server_tests; do
  log "ThreadSanitizer: $t"
  "$TSAN_DIR/tests/$t" --gtest_brief=1
done
# The thread pool alone and under MatMul at small shapes: the model shapes are slow under TSan.
log "ThreadSanitizer: kiln_native_cpu_tests"
"$TSAN_DIR/tests/kiln_native_cpu_tests" --gtest_brief=1 \
  --gtest_filter='ThreadPoolTest.*:MatMulTest.BatchInvariantAtSmallShapes'
