"""Sampling defaults come from the model (vLLM's --generation-config auto), the main job's
override sits over them, and the README's first example, run as written against the main job's
server, gets a short answer."""
import json
import pathlib
import re
import subprocess

import pytest

import gguf

import tiny_gguf
from conftest import MAIN_JOB_ARGS
from kiln_server import KilnServer

ROOT = pathlib.Path(__file__).resolve().parents[2]
README_MODEL = "smollm2-135m-instruct"


def readme_curl_example():
    """The first curl command in README.md, as a user would paste it."""
    text = (ROOT / "README.md").read_text()
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        if block.lstrip().startswith("curl "):
            return block
    raise AssertionError("README.md has no curl example")


def test_the_main_job_serves_the_default_gguf_with_these_flags():
    run_sh = (ROOT / "scripts" / "run.sh").read_text()
    serve = run_sh[run_sh.index('"$KILN_BUILD_DIR/src/kiln/kiln" serve'):]
    assert "smollm2-135m-instruct.gguf" in serve
    assert "--served-model-name " + README_MODEL in serve
    assert f"{MAIN_JOB_ARGS[0]} '{MAIN_JOB_ARGS[1]}'" in serve


@pytest.fixture(scope="module")
def readme_server(kiln_bin, smollm2_gguf):
    # What scripts/run.sh serves (the test above holds the two together).
    s = KilnServer(kiln_bin, smollm2_gguf, *MAIN_JOB_ARGS, served_name=README_MODEL)
    yield s
    assert s.stop() == 0, s.output()


def test_readme_first_example_answers_in_under_200_tokens(readme_server):
    command = readme_curl_example().replace("http://127.0.0.1:8080", readme_server.base_url)
    assert readme_server.base_url in command
    replies = []
    for _ in range(3):  # the same answer, and a short one, on every run
        out = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120,
                             check=True).stdout
        reply = json.loads(out)
        assert reply["choices"][0]["finish_reason"] == "stop", reply
        assert reply["usage"]["completion_tokens"] < 200, reply
        replies.append(reply["choices"][0]["message"]["content"])
    assert "Paris" in replies[0]
    assert replies[1:] == replies[:1] * 2


def test_model_card_shows_the_main_jobs_defaults(readme_server):
    model = readme_server.client().models.retrieve(README_MODEL).model_extra
    assert model["runtime"] == "vllm"
    card = model["sampling_defaults"]
    assert card["temperature"] == 0
    assert card["from_model"]["temperature"]["from"] == "--override-generation-config"
    assert "temperature=0" in readme_server.output()  # logged at start


def test_a_genai_folders_search_section_is_greedy(kiln_bin, smollm2_genai):
    s = KilnServer(kiln_bin, smollm2_genai, "--max-model-len", 256, "--max-num-seqs", 1)
    try:
        card = s.client().models.retrieve("smollm2").model_extra["sampling_defaults"]
        # The GenAI folder's search section says do_sample false: greedy.
        assert card["temperature"] == 0
        assert card["from_model"]["temperature"]["from"].startswith("genai_config.json")
        assert "genai_config.json" in card["source"]
    finally:
        assert s.stop() == 0, s.output()


def test_a_ggufs_sampling_metadata_gives_the_defaults(kiln_bin, smollm2_gguf, tmp_path):
    path = tmp_path / "sampled.gguf"
    F32, I32 = gguf.GGUFValueType.FLOAT32, gguf.GGUFValueType.INT32
    tiny_gguf.write_tiny_gguf(path, smollm2_gguf, metadata={
        "general.sampling.temp": (0.5, F32), "general.sampling.top_k": (40, I32),
        "general.sampling.top_p": (0.9, F32)})
    s = KilnServer(kiln_bin, path, "--max-model-len", 256, "--max-num-seqs", 1)
    try:
        card = s.client().models.retrieve("smollm2").model_extra["sampling_defaults"]
        assert card["temperature"] == 0.5 and card["top_k"] == 40
        assert card["top_p"] == pytest.approx(0.9)
        assert card["from_model"]["top_k"]["from"] == "GGUF general.sampling"
    finally:
        assert s.stop() == 0, s.output()
    # The override goes over the file's settings, field by field.
    s = KilnServer(kiln_bin, path, "--max-model-len", 256, "--max-num-seqs", 1,
                   "--override-generation-config", '{"top_k": 5}')
    try:
        card = s.client().models.retrieve("smollm2").model_extra["sampling_defaults"]
        assert card["temperature"] == 0.5 and card["top_k"] == 5
    finally:
        assert s.stop() == 0, s.output()


def test_absent_fields_take_the_defaults_and_present_ones_override(readme_server):
    client = readme_server.client()
    messages = [{"role": "user", "content": "Name a color."}]
    r = client.chat.completions.create(model=README_MODEL, messages=messages, max_tokens=24,
                                       logprobs=True, top_logprobs=5)
    # Greedy: every token is the most likely one.
    for entry in r.choices[0].logprobs.content:
        assert entry.logprob >= max(t.logprob for t in entry.top_logprobs) - 1e-6
    sampled = client.chat.completions.create(model=README_MODEL, messages=messages, max_tokens=64,
                                             temperature=1.0, seed=7, logprobs=True,
                                             top_logprobs=1)
    content = sampled.choices[0].logprobs.content
    assert any(e.logprob < e.top_logprobs[0].logprob - 1e-6 for e in content), \
        "64 tokens sampled at temperature 1 all matched the argmax"


def test_vllm_mode_ignores_the_folder(kiln_bin, smollm2_genai):
    s = KilnServer(kiln_bin, smollm2_genai, "--generation-config", "vllm")
    try:
        card = s.client().models.retrieve("smollm2").model_extra["sampling_defaults"]
        assert card["temperature"] == 1.0 and card["top_p"] == 1.0
        assert card["from_model"] == {}
    finally:
        assert s.stop() == 0, s.output()


def test_a_folders_max_new_tokens_is_the_default_max_tokens(kiln_bin, smollm2_genai, tmp_path):
    (tmp_path / "generation_config.json").write_text(
        json.dumps({"max_new_tokens": 5, "temperature": 0.0}))
    s = KilnServer(kiln_bin, smollm2_genai, "--generation-config", tmp_path)
    try:
        client = s.client()
        r = client.completions.create(model="smollm2", prompt="Once upon a time",
                                      extra_body={"ignore_eos": True})
        assert r.usage.completion_tokens == 5 and r.choices[0].finish_reason == "length"
        r = client.completions.create(model="smollm2", prompt="Once upon a time", max_tokens=9,
                                      extra_body={"ignore_eos": True})
        assert r.usage.completion_tokens == 9
    finally:
        assert s.stop() == 0, s.output()


def test_a_malformed_generation_config_stops_the_server_naming_it(kiln_bin, smollm2_genai,
                                                                   tmp_path):
    (tmp_path / "generation_config.json").write_text('{"temperature": 9}')
    proc = subprocess.run([kiln_bin, "serve", "--model", smollm2_genai, "--port", "0",
                           "--generation-config", tmp_path], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0
    assert "generation_config.json" in proc.stderr + proc.stdout
    assert "temperature" in proc.stderr + proc.stdout
    proc = subprocess.run([kiln_bin, "serve", "--model", smollm2_genai, "--port", "0",
                           "--override-generation-config", '{"temprature": 0}'],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "--override-generation-config: unknown field 'temprature'" in proc.stderr + proc.stdout
