#!/usr/bin/env bash
# Times the JSON-schema token mask (TokenMasker::FillAllowed) over the default model's
# vocabulary at typical states: microseconds per mask and the tokens it allows. The machine may
# be shared: the load average is printed before and after, and a run whose load reached the core
# count is marked invalid and exits 1, as bench/benchlib.py does.
#
#   bench/token_masker_bench.sh [repeats]
# Environment: KILN_BUILD_DIR (default build).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
build="${KILN_BUILD_DIR:-$root/build}"
tool="$build/tests/text_mask_bench"
[[ -x "$tool" ]] || { echo "$tool missing: build the text_mask_bench target" >&2; exit 1; }
gguf="$(bash "$root/scripts/fetch_default_model.sh")"
echo "CPU: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p'), $(nproc) cores"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$tool" "$gguf" "${1:-50}"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
if awk -v cores="$(nproc)" '{ exit !($1 >= cores) }' /proc/loadavg; then
  echo "INVALID RUN: measured while the machine was busy"
  exit 1
fi
