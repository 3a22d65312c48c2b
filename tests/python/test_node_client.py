"""The official `openai` npm package against `kiln serve` (tests/node, run by node's test runner)."""
import os
import pathlib
import subprocess

from kiln_server import KilnServer

NODE_DIR = pathlib.Path(__file__).resolve().parents[1] / "node"


def test_openai_node_client(kiln_bin, default_model):
    assert (NODE_DIR / "node_modules" / "openai").exists(), "run scripts/install_node.sh"
    server = KilnServer(kiln_bin, default_model, "--max-model-len", 1024, "--max-num-seqs", 4)
    try:
        proc = subprocess.run(
            ["node", "--test", "--test-reporter=spec", str(NODE_DIR / "openai_client.test.mjs")],
            env={**os.environ, "KILN_BASE_URL": server.base_url + "/v1", "KILN_MODEL": "smollm2",
                 "KILN_RUNTIME": default_model.runtime},
            capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "pass 5" in proc.stdout
    finally:
        server.stop()
