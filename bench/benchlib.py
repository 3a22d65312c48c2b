"""What every Kiln benchmark shares: the CPU it ran on, and a quiet machine before each
measurement.

These machines are shared and their speed drifts, so a benchmark runs Kiln and its peer in the
same run, prints ratios, and measures only while the 1-minute load average is below the core
count. `wait_for_quiet()` waits for that before each measurement; when the load stays high the
run is invalid and the benchmark exits 2, so an invalid run never passes for a result.
"""
import os
import re
import subprocess
import sys
import time

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


def wait_for_quiet(max_wait=300.0):
    """Waits for the 1-minute load average to fall below the core count and returns it; exits 2
    (an invalid run) if it does not within max_wait seconds."""
    cores = os.cpu_count() or 1
    deadline = time.time() + max_wait
    while load() >= cores:
        if time.time() > deadline:
            print(f"INVALID RUN: load average {load():.2f} stayed at or above {cores} cores for "
                  f"{max_wait:.0f} s")
            sys.exit(2)
        time.sleep(2)
    return load()


def header(title):
    print(f"{title}\nCPU: {cpu_description()}\nload average before: "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))


def finish():
    """Prints the load after the measurements."""
    print("load average after: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
