"""The model store's pulls against real servers on loopback (model_sources.py): a Hugging Face
Hub repository pulled, checked file by file and served; downloads cut off mid-file, or the
process killed mid-file, resume where they stopped; a digest mismatch installs nothing; two
concurrent pulls of one model leave one intact copy; an OCI artifact pushed with ORAS to Debian's
docker-registry pulls and serves; and the kiln model commands' listings and exit codes."""
import hashlib
import json
import os
import pathlib
import signal
import subprocess
import time

import bcrypt
import pytest

from kiln_server import KilnServer
from model_sources import Behaviour, Registry, SourceServer

EXIT_USAGE, EXIT_NOT_FOUND = 2, 3


@pytest.fixture
def source():
    server = SourceServer()
    yield server
    server.close()


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "kiln-home"
    home.mkdir()
    return home


def kiln(kiln_bin, home, *args, env=None, check=True):
    res = subprocess.run([str(kiln_bin), *map(str, args)], capture_output=True, text=True,
                         env={**os.environ, "KILN_HOME": str(home), **(env or {})}, timeout=600)
    if check:
        assert res.returncode == 0, (res.returncode, res.stderr)
    return res


def add_catalog(kiln_bin, home, tmp_path, *entries):
    path = tmp_path / f"catalog-{len(list(tmp_path.glob('catalog-*')))}.json"
    path.write_text(json.dumps({"models": [
        {"framework": "vllm", "task": "chat-completion", "modelVersion": "1",
         "supportedCompute": ["cpu"], **e} for e in entries]}))
    kiln(kiln_bin, home, "catalog", "add", path)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def blob(size, seed):
    return (hashlib.sha256(str(seed).encode()).digest() * (size // 32 + 1))[:size]


def nothing_installed(home, name):
    models = home / "models"
    assert not (models / name).exists() or not any((models / name).iterdir())
    assert not list((models / ".partial").rglob("*.part")) if (models / ".partial").exists() else True


def test_a_hub_repository_pulls_checked_and_serves(kiln_bin, smollm2_hf, home, source):
    files = {p.name: p.read_bytes() for p in pathlib.Path(smollm2_hf).iterdir() if p.is_file()
             and not p.name.startswith(".")}
    files["original/consolidated.pth"] = b"not fetched when safetensors are there"
    source.add_repo("kiln-test/SmolLM2", files)
    env = {"HF_ENDPOINT": source.url}
    res = kiln(kiln_bin, home, "model", "pull", "hf://kiln-test/SmolLM2", env=env)
    folder = pathlib.Path(res.stdout.strip())
    assert folder.is_dir()
    for name, data in files.items():
        if name.startswith("original/"):
            assert not (folder / name).exists()
        else:
            assert sha256(folder / name) == hashlib.sha256(data).hexdigest(), name
    # LFS files come from the CDN the Hub redirects to, and each file is fetched once.
    assert source.requests_for("/model.safetensors")
    assert len([r for r in source.log if r[1].startswith("/cdn/")]) == len(
        [d for d in files.values() if len(d) > 1024 and d is not files["original/consolidated.pth"]])
    record = json.loads((folder / ".kiln-model.json").read_text())
    assert record["revision"] == "0123456789abcdef0123456789abcdef01234567"
    by_path = {f["path"]: f for f in record["files"]}
    assert by_path["model.safetensors"]["sha256"] == hashlib.sha256(
        files["model.safetensors"]).hexdigest()
    assert "gitBlobId" in by_path["config.json"]

    listing = json.loads(kiln(kiln_bin, home, "model", "list", "-o", "json").stdout)["models"]
    assert [(m["alias"], m["path"], m["pulled"]) for m in listing] == [
        ("kiln-test/SmolLM2", str(folder), True)]
    # Served from the store (the source is not asked again), on the runtime its files call for.
    asked = len(source.log)
    server = KilnServer(kiln_bin, "hf://kiln-test/SmolLM2", "--max-model-len", "512",
                        served_name="smollm2", env={"KILN_HOME": str(home), **env})
    try:
        card = server.client().models.list().data[0]
        assert card.model_extra["runtime"] == "vllm"
        reply = server.client().chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "Say hi."}], max_tokens=4)
        assert reply.choices[0].message.content
    finally:
        server.stop()
    assert len(source.log) == asked

    kiln(kiln_bin, home, "model", "rm", "hf://kiln-test/SmolLM2")
    assert not folder.exists()
    assert json.loads(kiln(kiln_bin, home, "model", "list", "-o", "json").stdout)["models"] == []


def test_a_download_cut_off_mid_file_resumes(kiln_bin, home, tmp_path, source):
    data = blob(3_000_000, 1)
    url = source.add_file("weights.bin", data, Behaviour(cut_after=1_000_000))
    add_catalog(kiln_bin, home, tmp_path, {"id": "cut-test-cpu:1", "alias": "cut-test", "uri": url,
                                           "sha256": hashlib.sha256(data).hexdigest()})
    res = kiln(kiln_bin, home, "model", "pull", "cut-test")
    assert sha256(res.stdout.strip()) == hashlib.sha256(data).hexdigest()
    # The second request asked for the rest, from the byte the first one stopped at.
    assert [r[2] for r in source.requests_for("/weights.bin")] == [None, "bytes=1000000-"]
    assert "attempt 2" in res.stderr


def test_a_server_that_ignores_range_restarts_the_file(kiln_bin, home, tmp_path, source):
    data = blob(2_000_000, 2)
    url = source.add_file("w.bin", data, Behaviour(cut_after=700_000, ignore_range=True))
    add_catalog(kiln_bin, home, tmp_path, {"id": "norange-cpu:1", "alias": "norange", "uri": url,
                                           "sha256": hashlib.sha256(data).hexdigest()})
    res = kiln(kiln_bin, home, "model", "pull", "norange")
    assert sha256(res.stdout.strip()) == hashlib.sha256(data).hexdigest()
    assert [r[2] for r in source.requests_for("/w.bin")] == [None, "bytes=700000-"]


def test_a_killed_pull_resumes_where_it_stopped(kiln_bin, home, tmp_path, source):
    data = blob(4_000_000, 3)
    behaviour = Behaviour(bytes_per_second=400_000)
    url = source.add_file("slow.bin", data, behaviour)
    add_catalog(kiln_bin, home, tmp_path, {"id": "slow-test-cpu:1", "alias": "slow-test",
                                           "uri": url, "sha256": hashlib.sha256(data).hexdigest()})
    proc = subprocess.Popen([str(kiln_bin), "model", "pull", "slow-test"],
                            env={**os.environ, "KILN_HOME": str(home)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    part = home / "models" / ".partial" / "slow-test-cpu" / "1" / "slow.bin.part"
    deadline = time.time() + 60
    while not (part.exists() and part.stat().st_size >= 500_000):
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = part.stat().st_size
    assert 500_000 <= kept < len(data)
    assert not (home / "models" / "slow-test-cpu" / "1").exists()  # nothing half-installed
    behaviour.bytes_per_second = None
    res = kiln(kiln_bin, home, "model", "pull", "slow-test")
    assert sha256(res.stdout.strip()) == hashlib.sha256(data).hexdigest()
    assert source.requests_for("/slow.bin")[-1][2] == f"bytes={kept}-"
    assert f"resuming at byte {kept}" in res.stderr


def test_a_digest_mismatch_installs_nothing(kiln_bin, home, tmp_path, source):
    data = blob(300_000, 4)
    url = source.add_file("bad.bin", data)
    add_catalog(kiln_bin, home, tmp_path, {"id": "bad-sum-cpu:1", "alias": "bad-sum", "uri": url,
                                           "sha256": "0" * 64})
    res = kiln(kiln_bin, home, "model", "pull", "bad-sum", check=False)
    assert res.returncode == 1
    assert "SHA-256 is " + hashlib.sha256(data).hexdigest() in res.stderr
    assert "nothing was installed" in res.stderr
    nothing_installed(home, "bad-sum-cpu")
    assert json.loads(kiln(kiln_bin, home, "model", "list", "-o", "json").stdout)["models"] == []

    # A Hub file whose bytes do not match the SHA-256 the Hub lists for it.
    files = {"config.json": b'{"model_type": "llama"}', "model.safetensors": blob(50_000, 5)}
    source.add_repo("kiln-test/corrupt", files)
    source.behaviour["/cdn/" + hashlib.sha256(files["model.safetensors"]).hexdigest()] = \
        Behaviour(corrupt=True)
    res = kiln(kiln_bin, home, "model", "pull", "hf://kiln-test/corrupt",
               env={"HF_ENDPOINT": source.url}, check=False)
    assert res.returncode == 1 and "model.safetensors" in res.stderr, res.stderr
    nothing_installed(home, "hf-kiln-test-corrupt")
    res = kiln(kiln_bin, home, "model", "pull", "hf://kiln-test/missing",
               env={"HF_ENDPOINT": source.url}, check=False)
    assert res.returncode == EXIT_NOT_FOUND and "no such repository" in res.stderr


def test_two_concurrent_pulls_leave_one_intact_copy(kiln_bin, home, tmp_path, source):
    data = blob(3_000_000, 6)
    url = source.add_file("shared.bin", data, Behaviour(bytes_per_second=1_000_000))
    add_catalog(kiln_bin, home, tmp_path, {"id": "shared-cpu:1", "alias": "shared", "uri": url,
                                           "sha256": hashlib.sha256(data).hexdigest()})
    env = {**os.environ, "KILN_HOME": str(home)}
    procs = [subprocess.Popen([str(kiln_bin), "model", "pull", "shared"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    paths = {out.strip() for out, _ in outs}
    assert len(paths) == 1
    assert sha256(paths.pop()) == hashlib.sha256(data).hexdigest()
    # One process fetched it; the other waited for it and found its copy.
    assert len(source.requests_for("/shared.bin")) == 1
    assert any("waiting for another pull" in err for _, err in outs), outs
    assert sorted(p.name for p in (home / "models" / "shared-cpu").iterdir()) == ["1"]


def test_an_oci_artifact_pushed_with_oras_pulls_and_serves(kiln_bin, smollm2_gguf, smollm2_hf,
                                                           home, tmp_path):
    import oras.client
    users = tmp_path / "htpasswd"
    users.write_text("kiln:" + bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode() + "\n")
    registry = Registry(tmp_path / "registry", htpasswd=users)
    try:
        client = oras.client.OrasClient(hostname=registry.host, insecure=True,
                                         auth_backend="basic")
        docker_config = tmp_path / "docker"
        docker_config.mkdir()
        client.login(hostname=registry.host, username="kiln", password="s3cret",
                     config_path=str(docker_config / "config.json"))
        client.push(target=f"{registry.host}/kiln/smollm2-gguf:v1", files=[str(smollm2_gguf)],
                    disable_path_validation=True)
        # A folder is pushed as one tar+gzip layer, unpacked on pull.
        folder = tmp_path / "tokenizer"
        folder.mkdir()
        for name in ("tokenizer.json", "tokenizer_config.json", "config.json"):
            (folder / name).write_bytes((pathlib.Path(smollm2_hf) / name).read_bytes())
        client.push(target=f"{registry.host}/kiln/tokenizer:v2", files=[str(folder)],
                    disable_path_validation=True)

        uri = f"oci://{registry.host}/kiln/smollm2-gguf:v1"
        res = kiln(kiln_bin, home, "model", "pull", uri, check=False)
        assert res.returncode == 1 and "credentials" in res.stderr, res.stderr
        creds = {"KILN_OCI_USERNAME": "kiln", "KILN_OCI_PASSWORD": "s3cret"}
        res = kiln(kiln_bin, home, "model", "pull", uri, env=creds)
        pulled = pathlib.Path(res.stdout.strip())
        assert pulled.name == pathlib.Path(smollm2_gguf).name
        assert sha256(pulled) == sha256(smollm2_gguf)
        record = json.loads((pulled.parent / ".kiln-model.json").read_text())
        assert record["revision"].startswith("sha256:")

        # The credentials `oras login` wrote, found through DOCKER_CONFIG.
        res = kiln(kiln_bin, home, "model", "pull", f"oci://{registry.host}/kiln/tokenizer:v2",
                   env={"DOCKER_CONFIG": str(docker_config)})
        unpacked = pathlib.Path(res.stdout.strip())
        assert unpacked.name == "tokenizer" and unpacked.is_dir()
        for name in ("tokenizer.json", "tokenizer_config.json", "config.json"):
            assert sha256(unpacked / name) == sha256(folder / name)

        res = kiln(kiln_bin, home, "model", "pull", f"oci://{registry.host}/kiln/nothing:v1",
                   env=creds, check=False)
        assert res.returncode == EXIT_NOT_FOUND, res.stderr

        server = KilnServer(kiln_bin, uri, "--max-model-len", "512", served_name="smollm2",
                            env={"KILN_HOME": str(home), **creds})
        try:
            reply = server.client().chat.completions.create(
                model="smollm2", messages=[{"role": "user", "content": "Say hi."}], max_tokens=4)
            assert reply.choices[0].message.content
        finally:
            server.stop()
    finally:
        registry.close()


def test_model_commands_exit_codes(kiln_bin, home):
    assert kiln(kiln_bin, home, "model", "pull", "no-such-model", check=False).returncode == \
        EXIT_NOT_FOUND
    assert kiln(kiln_bin, home, "model", "show", "no-such-model", check=False).returncode == \
        EXIT_NOT_FOUND
    assert kiln(kiln_bin, home, "model", "rm", "qwen2.5-0.5b", check=False).returncode == \
        EXIT_NOT_FOUND
    assert kiln(kiln_bin, home, "model", "--no-such-flag", check=False).returncode == EXIT_USAGE
    assert kiln(kiln_bin, home, "model", "pull", check=False).returncode == EXIT_USAGE
    assert kiln(kiln_bin, home, "model", "--help").returncode == 0
    show = json.loads(kiln(kiln_bin, home, "model", "show", "qwen2.5-0.5b", "-o", "json").stdout)
    assert (show["uri"], show["installed"]) == ("hf://Qwen/Qwen2.5-0.5B-Instruct", False)


def test_a_catalog_added_from_a_url_names_models_to_pull(kiln_bin, home, source):
    data = blob(100_000, 7)
    url = source.add_file("m.gguf", data)
    catalog = {"models": [{"id": "remote-cat-cpu:2", "alias": "remote-cat", "framework": "vllm",
                           "task": "chat-completion", "uri": url,
                           "sha256": hashlib.sha256(data).hexdigest()}]}
    catalog_url = source.add_file("team-catalog.json", json.dumps(catalog).encode())
    res = kiln(kiln_bin, home, "catalog", "add", catalog_url)
    assert "team-catalog.json" in res.stdout
    res = kiln(kiln_bin, home, "model", "pull", "remote-cat")
    assert pathlib.Path(res.stdout.strip()) == home / "models" / "remote-cat-cpu" / "2" / "m.gguf"
    assert kiln(kiln_bin, home, "catalog", "add", source.url + "/files/none.json",
                check=False).returncode == EXIT_NOT_FOUND
