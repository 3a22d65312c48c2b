"""What every Kiln benchmark shares: the CPU it ran on, and a quiet machine before each
measurement.

These machines are shared and their speed drifts, so a benchmark runs Kiln and its peer in the
same run, prints ratios, and measures only while the 1-minute load average is below the core
count. `quiet()` waits for that before each measurement; when the load stays high the run is
marked invalid and `finish()` exits non-zero, so an invalid run never passes for a result.
"""
import os
import re
import subprocess
import sys
import time

_invalid = []


def cpu_description():
    """lscpu's model name, and whether AVX-512 and VNNI are there (ratios depend on them)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown CPU"
    model = re.search(r"^Model name:\s*(.+)$", out, re.M)
    flags = re.search(r"^Flags:\s*(.+)$", out, re.M)
    flags = set(flags.group(1).split()) if flags else set()
    features = [name for name, flag in (("AVX2", "avx2"), ("AVX-512", "avx512f"),
                                        ("AVX512-VNNI", "avx512_vnni"), ("AVX-VNNI", "avx_vnni"),
                                        ("AMX", "amx_tile")) if flag in flags]
    return (f"{model.group(1).strip() if model else 'unknown CPU'}, {os.cpu_count()} cores, "
            f"{' '.join(features) or 'no AVX2'}")


def load():
    return os.getloadavg()[0]


def quiet(what, max_wait=180.0):
    """Waits until the 1-minute load average is below the core count, up to max_wait seconds.
    If it never is, records `what` as measured on a busy machine (the run is then invalid)."""
    cores = os.cpu_count() or 1
    deadline = time.time() + max_wait
    while load() >= cores and time.time() < deadline:
        time.sleep(2)
    if load() >= cores:
        _invalid.append(f"{what} (load {load():.2f} >= {cores} cores)")
        print(f"warning: measuring {what} with load {load():.2f}", file=sys.stderr)


def header(title):
    print(f"{title}\nCPU: {cpu_description()}\nload average before: "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))


def finish():
    """Prints the load after; exits 1 when a measurement ran on a busy machine."""
    print("load average after: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    if _invalid:
        print("INVALID RUN: measured while the machine was busy: " + "; ".join(_invalid))
        sys.exit(1)
