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
    # A Hub that cannot be reached: a closed port on loopback.
    env = {"KILN_HOME": str(home), "HF_ENDPOINT": "http://127.0.0.1:9"}
    cases = [(["--model", "nosuch"], "no model 'nosuch' in the catalog (aliases: ", 3),
             (["--model", "smollm2-135m-vllm"], "which does not exist", 3),
             (["--model", "qwen2.5-7b"], "pulling Qwen2.5-7B-Instruct-vllm:1: GET "
              "http://127.0.0.1:9/api/models/Qwen/Qwen2.5-7B-Instruct/revision/main", 1),
             (["--model", "smollm2-135m", "--runtime", "vllm"],
              "which the onnx-genai runtime serves (framework ONNX); --runtime asked for vllm", 1)]
    for args, needle, status in cases:
        res = subprocess.run([str(kiln_bin), "serve", *args], capture_output=True, text=True,
                             env=env, timeout=60)
        assert res.returncode == status, res.stderr
        assert needle in res.stderr, res.stderr
    assert not (home / "models" / "Qwen2.5-7B-Instruct-vllm").exists()


def test_added_catalogs_override_by_id_and_bad_ones_are_refused(kiln_bin, tmp_path, smollm2_gguf):
    home = store(tmp_path, smollm2_gguf=smollm2_gguf)
    env = {"KILN_HOME": str(home)}
    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps({"models": [
        {"id": "smollm2-135m-instruct-vllm-cpu:1", "alias": "tiny", "framework": "vllm",
         "supportedCompute": ["cpu"], "uri": "models/smollm2-135m-instruct.gguf"},
        {"id": "elsewhere:1", "alias": "elsewhere", "framework": "ONNX",
         "uri": "https://example.invalid/model.tar.gz"}]}))
    res = subprocess.run([str(kiln_bin), "catalog", "add", str(mine)], capture_output=True,
                         text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert "added 2 entries" in res.stdout
    by_id = {m["id"]: m for m in catalog_list(kiln_bin, home)["models"]}
    assert by_id["smollm2-135m-instruct-vllm-cpu:1"]["alias"] == "tiny"
    assert by_id["elsewhere:1"]["runtime"] == "onnx-genai"
    # A bad file names what is wrong and installs nothing.
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"models": [{"id": "x:1", "alias": "x", "framework": "tensorrt"}]}))
    res = subprocess.run([str(kiln_bin), "catalog", "add", str(bad)], capture_output=True,
                         text=True, env=env)
    assert res.returncode == 1
    assert "models[0] ('x:1'): 'framework' is 'tensorrt'" in res.stderr
    assert sorted(p.name for p in (home / "catalogs").iterdir()) == ["0001-mine.json"]
    # The overridden entry serves by its new alias.
    server = KilnServer(kiln_bin, "tiny", "--max-model-len", "512", served_name="tiny", env=env)
    try:
        assert server.client().models.list().data[0].model_extra["runtime"] == "vllm"
    finally:
        server.stop()


def test_kiln_catalog_adds_the_helm_charts_catalog(kiln_bin, tmp_path):
    """The catalog the Kubernetes chart ships is schema-valid, and $KILN_CATALOG (how a pod
    mounts its model's entry) merges it over the built-in one; a missing file is an error."""
    chart_catalog = ROOT / "deploy" / "helm" / "kiln" / "catalog.json"
    doc = json.loads(chart_catalog.read_text())
    schema = json.loads((ROOT / "docs" / "catalog.schema.json").read_text())
    jsonschema.validate(doc, schema)
    home = tmp_path / "home"
    env = {"KILN_HOME": str(home), "KILN_CATALOG": str(chart_catalog)}
    res = subprocess.run([str(kiln_bin), "catalog", "list", "--output", "json"],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    by_id = {m["id"]: m for m in json.loads(res.stdout)["models"]}
    for entry in doc["models"]:
        assert by_id[entry["id"]]["uri"] == entry["uri"]
        assert by_id[entry["id"]]["runtime"] in ("vllm", "onnx-genai")
    # Every entry with a config plans on a GPU, as the operator plans it.
    for entry in doc["models"]:
        if "hfConfig" not in entry:
            continue
        config = tmp_path / f"{entry['alias']}.json"
        config.write_text(json.dumps(entry["hfConfig"]))
        plan = subprocess.run([str(kiln_bin), "plan", str(config), "--device", "gpu:81559",
                               "--output", "json"], capture_output=True, text=True)
        assert plan.returncode == 0, (entry["alias"], plan.stderr)
        parsed = json.loads(plan.stdout)
        assert parsed["plan"]["max_model_len"] == entry["contextLength"], entry["alias"]
        assert "--device" in parsed["serve_args"]

    env["KILN_CATALOG"] = str(tmp_path / "missing.json")
    res = subprocess.run([str(kiln_bin), "catalog", "list"], capture_output=True, text=True,
                         env=env)
    assert res.returncode != 0
    assert "KILN_CATALOG names" in res.stderr and "missing.json" in res.stderr
