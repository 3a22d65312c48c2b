"""MLServer (Seldon's inference server) as bench/predict_bench.py's peer: the scikit-learn
model itself, pickled with joblib, behind MLServer's V2 inference protocol over HTTP, through
its mlserver-sklearn runtime. PyPI has no ONNX runtime for MLServer (mlserver-openvino, from
2023, is the nearest), so it serves the estimator the ONNX file was exported from.

It lives in its own virtual environment, KILN_CACHE's mlserver-venv, with these pins, made by

  ~/.cache/kiln/venv/bin/python bench/predict_peer.py install

which runs `python -m venv ~/.cache/kiln/mlserver-venv` and `pip install` of PINS. uvloop is
pinned to 0.21.0: with 0.23.0 (what pip picks unpinned) MLServer 1.7.1's inference worker dies
at start ("There is no current event loop"). scikit-learn, numpy and joblib are the bench venv's
versions, so the pickle written there loads here as it was.
"""
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "python"))
from kiln_server import free_port  # noqa: E402

PINS = ["mlserver==1.7.1", "mlserver-sklearn==1.7.1", "scikit-learn==1.9.1", "numpy==2.4.6",
        "scipy==1.17.1", "joblib==1.6.0", "pandas==3.1.1", "uvloop==0.21.0"]


def default_venv():
    cache = pathlib.Path(os.environ.get("KILN_CACHE", pathlib.Path.home() / ".cache" / "kiln"))
    return cache / "mlserver-venv"


def install(venv):
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", *PINS], check=True)


def versions(venv):
    """{package: version} of what the peer needs in `venv`, or None when it is not installed."""
    python = venv / "bin" / "python"
    if not python.exists():
        return None
    names = ["mlserver", "mlserver-sklearn", "scikit-learn"]
    res = subprocess.run([python, "-c", "import importlib.metadata as m, json, sys; "
                          "print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))", *names],
                         capture_output=True, text=True)
    return json.loads(res.stdout) if res.returncode == 0 else None


class MLServer:
    """`mlserver start` on a joblib-pickled scikit-learn classifier, on loopback, served as
    `name`. max_batch_time > 0 turns on its adaptive batching (off by default in MLServer), up to
    max_batch_size requests a batch. Blocks until the model is ready, or raises with the log's
    tail."""

    def __init__(self, venv, joblib_path, name, log_path, max_batch_size=0, max_batch_time=0.0,
                 start_timeout=120):
        self.name = name
        self.port = free_port()
        self.folder = pathlib.Path(tempfile.mkdtemp(prefix="mlserver-"))
        model = self.folder / name  # MLServer warns when the folder is not the model's name
        model.mkdir()
        shutil.copy(joblib_path, model / "model.joblib")
        (model / "model-settings.json").write_text(json.dumps({
            "name": name, "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "./model.joblib"},
            "max_batch_size": max_batch_size if max_batch_time > 0 else 0,
            "max_batch_time": max_batch_time}))
        # Its defaults but for the addresses, and debug off: no log line per request.
        (self.folder / "settings.json").write_text(json.dumps({
            "debug": False, "host": "127.0.0.1", "http_port": self.port,
            "grpc_port": free_port(), "metrics_port": free_port()}))
        self.log_path = pathlib.Path(log_path)
        # Its own session, so stop() can end its inference workers with it; its own folder as
        # the working directory, where it writes .envs and .metrics.
        self.proc = subprocess.Popen([str(venv / "bin" / "mlserver"), "start", str(self.folder)],
                                     stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT,
                                     cwd=self.folder, start_new_session=True)
        self.pid = self.proc.pid
        deadline = time.time() + start_timeout
        while not self.ready():
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError(f"mlserver did not become ready:\n{self.tail()}")
            time.sleep(0.5)

    def ready(self):
        url = f"http://127.0.0.1:{self.port}/v2/models/{self.name}/ready"
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def tail(self, lines=20):
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:] != ["install"]:
        sys.exit("usage: python bench/predict_peer.py install")
    install(default_venv())
