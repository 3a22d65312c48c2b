"""The catalog from the command line: `kiln catalog list` as JSON that the documented schema
accepts, with what the model store holds; and `kiln serve <alias>` serving the default model in
the runtime its entry's framework decides, from a model store of its own."""
import json
import pathlib
import subprocess

import jsonschema

from kiln_server import KilnServer

ROOT = pathlib.Path(__file__).resolve().parents[2]


def store(tmp_path, smollm2_gguf=None, smollm2_genai=None):
    models = tmp_path / "home" / "models"
    models.mkdir(parents=True)
    if smollm2_gguf:
        (models / "smollm2-135m-instruct.gguf").symlink_to(smollm2_gguf)
    if smollm2_genai:
        (models / "smollm2-135m-instruct").symlink_to(smollm2_genai)
    return tmp_path / "home"


def catalog_list(kiln_bin, home):
    res = subprocess.run([str(kiln_bin), "catalog", "list", "--output", "json"],
                         capture_output=True, text=True, env={"KILN_HOME": str(home)})
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_catalog_list_is_schema_valid_json_and_knows_the_store(kiln_bin, tmp_path, smollm2_gguf):
    home = store(tmp_path, smollm2_gguf=smollm2_gguf)
    listing = catalog_list(kiln_bin, home)
    schema = json.loads((ROOT / "docs" / "catalog.schema.json").read_text())
    jsonschema.validate(listing, schema)
    by_id = {m["id"]: m for m in listing["models"]}
    onnx = by_id["smollm2-135m-instruct-generic-cpu:1"]
    vllm = by_id["smollm2-135m-instruct-vllm-cpu:1"]
    assert (onnx["runtime"], onnx["framework"], onnx["cached"]) == ("onnx-genai", "ONNX", False)
    assert (vllm["runtime"], vllm["framework"], vllm["cached"]) == ("vllm", "vllm", True)
    assert {"phi-4-mini", "qwen2.5-0.5b", "llama-3.2-1b", "mistral-7b"} <= {
        m["alias"] for m in listing["models"]}


def test_serve_by_alias_picks_the_runtime_its_framework_decides(kiln_bin, tmp_path, smollm2_gguf,
                                                                smollm2_genai):
    home = store(tmp_path, smollm2_gguf=smollm2_gguf, smollm2_genai=smollm2_genai)
    for alias, runtime in [("smollm2-135m-vllm", "vllm"), ("SmolLM2-135M", "onnx-genai")]:
        server = KilnServer(kiln_bin, alias, "--max-model-len", "512", served_name=alias,
                            env={"KILN_HOME": str(home)})
        try:
            card = server.client().models.list().data[0]
            assert card.id == alias
            assert card.model_extra["runtime"] == runtime
            reply = server.client().chat.completions.create(
                model=alias, messages=[{"role": "user", "content": "Say hi."}], max_tokens=4)
            assert reply.choices[0].message.content
            assert f"is smollm2-135m-instruct-" in server.output()
        finally:
            server.stop()


def test_serve_by_alias_says_why_it_cannot(kiln_bin, tmp_path):
    home = store(tmp_path)
    cases = [(["--model", "nosuch"], "no model 'nosuch' in the catalog (aliases: "),
             (["--model", "smollm2-135m-vllm"], "which does not exist"),
             (["--model", "qwen2.5-7b"], "fetching models is not built yet"),
             (["--model", "smollm2-135m", "--runtime", "vllm"],
              "which the onnx-genai runtime serves (framework ONNX); --runtime asked for vllm")]
    for args, needle in cases:
        res = subprocess.run([str(kiln_bin), "serve", *args], capture_output=True, text=True,
                             env={"KILN_HOME": str(home)}, timeout=60)
        assert res.returncode == 1, res.stderr
        assert needle in res.stderr, res.stderr
