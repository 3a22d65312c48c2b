#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, AddressSanitizer + UBSan) in $KILN_BUILD_DIR-fuzz and runs
# each for the given number of seconds (default 60), starting from its seed corpus in
# tests/fuzz/corpus/<target>/ when there is one. A crash fails the script and leaves the input.
# KILN_FUZZ_SEED fixes libFuzzer's random seed, so a run can be repeated input for input (CI
# uses 1; unset, each run explores differently).
source "$(dirname "$0")/common.sh"

SECONDS_EACH="${1:-60}"
FUZZ_BUILD="$KILN_BUILD_DIR-fuzz"
log "Fuzz: building targets with clang in $FUZZ_BUILD"
cmake -S "$KILN_ROOT" -B "$FUZZ_BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DKILN_FUZZ=ON \
  -DKILN_BUILD_TESTS=ON -DKILN_DEPS_DIR="$KILN_DEPS_DIR" >/dev/null
targets=()
for src in "$KILN_ROOT"/tests/fuzz/*_fuzz.cc; do
  [ -e "$src" ] || continue
  targets+=("$(basename "$src" .cc)")
done
if [ ${#targets[@]} -eq 0 ]; then
  log "Fuzz: no targets"
  exit 0
fi
cmake --build "$FUZZ_BUILD" -j "$(nproc)" --target "${targets[@]}"
for t in "${targets[@]}"; do
  work="$(mktemp -d)"
  corpus=()
  [ -d "$KILN_ROOT/tests/fuzz/corpus/$t" ] && corpus=("$KILN_ROOT/tests/fuzz/corpus/$t")
  log "Fuzz: $t for ${SECONDS_EACH}s"
  seed=()
  [ -n "${KILN_FUZZ_SEED:-}" ] && seed=("-seed=$KILN_FUZZ_SEED")
  status=0
  (cd "$work" && "$FUZZ_BUILD/tests/$t" "${seed[@]}" -max_total_time="$SECONDS_EACH" \
     -rss_limit_mb=4096 -print_final_stats=1 "$work" "${corpus[@]}" >"$work/fuzz.log" 2>&1) ||
    status=$?
  grep -E "stat::number_of_executed_units|ERROR|SUMMARY|Done" "$work/fuzz.log" || true
  if compgen -G "$work/crash-*" >/dev/null || compgen -G "$work/leak-*" >/dev/null || \
     compgen -G "$work/timeout-*" >/dev/null || compgen -G "$work/oom-*" >/dev/null; then
    log "Fuzz: $t found a failing input, kept in $work"
    exit 1
  fi
  # A target that cannot start, or stops before running an input, has tested nothing.
  runs="$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$work/fuzz.log" | tail -n 1)"
  if [ "$status" != 0 ] || [ "${runs:-0}" -eq 0 ]; then
    tail -n 20 "$work/fuzz.log"
    log "Fuzz: $t exited with status $status after ${runs:-no} runs; its output is in $work"
    exit 1
  fi
  rm -rf "$work"
done
