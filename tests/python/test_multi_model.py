"""Several models in one `kiln serve`: the default model on both generative runtimes (its catalog
aliases: onnx-genai from the GenAI folder, vllm from the GGUF) beside a predictive scikit-learn
model, each answering by name, concurrently; /v1/models lists them with runtime and context
length; a request for a model that is not loaded gets 404 listing the loaded ones; /metrics
carries every model's families under its model_name; and unloading a model lets its requests in
flight finish and loses nothing of another model's stream."""
import base64
import concurrent.futures
import json
import subprocess
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import openai
import pytest

from kiln_server import KilnServer, stream_in_flight
from test_catalog import store

GENAI, VLLM, IRIS = "smollm2-135m", "smollm2-135m-vllm", "iris"


@pytest.fixture(scope="module")
def iris_onnx(tmp_path_factory):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from skl2onnx import to_onnx
    x, y = load_iris(return_X_y=True)
    x = x.astype(np.float32)
    model = LogisticRegression(max_iter=500).fit(x, y)
    path = tmp_path_factory.mktemp("iris") / "iris.onnx"
    path.write_bytes(to_onnx(model, x[:1]).SerializeToString())
    return path, model, x


@pytest.fixture
def server(kiln_bin, tmp_path, smollm2_gguf, smollm2_genai, iris_onnx):
    home = store(tmp_path, smollm2_gguf=smollm2_gguf, smollm2_genai=smollm2_genai)
    srv = KilnServer(kiln_bin, [GENAI, VLLM, f"{IRIS}={iris_onnx[0]}"], "--max-model-len", "512",
                     served_name=None, env={"KILN_HOME": str(home)})
    yield srv
    srv.stop()


def call(server, method, path, body=None, query=""):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(server.base_url + path + query, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def predict(server, rows):
    data = base64.b64encode(json.dumps(rows).encode()).decode()
    status, body = call(server, "POST", "/v1/predict", {"items": [
        {"content_type": "application/json", "encoder": "base64", "data": data}]},
        query=f"?model={IRIS}")
    assert status == 200, body
    return json.loads(base64.b64decode(body["items"][0]["data"]))


def chat(server, model, content, max_tokens=12):
    stream = server.client().chat.completions.create(
        model=model, messages=[{"role": "user", "content": content}], max_tokens=max_tokens,
        temperature=0, stream=True)
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def read_stream(conn):
    """Reads the rest of an SSE completion stream: its finish reason and the tokens the usage
    chunk counts."""
    data = b""
    while not data.endswith(b"\r\n0\r\n\r\n"):  # the last chunk of a chunked body
        chunk = conn.recv(65536)
        assert chunk, data[-300:]
        data += chunk
    conn.close()
    events = [json.loads(line[6:]) for line in data.decode().split("\n")
              if line.startswith("data: {")]
    finish = [e["choices"][0]["finish_reason"] for e in events if e.get("choices")][-1]
    usage = [e["usage"] for e in events if e.get("usage")][-1]
    return finish, usage["completion_tokens"]


def test_three_models_of_three_runtimes_answer_by_name_concurrently(server, iris_onnx):
    _, model, x = iris_onnx
    status, listing = call(server, "GET", "/v1/models")
    cards = {c["id"]: c for c in listing["data"]}
    assert {n: (c["runtime"], c["context_length"]) for n, c in cards.items()} == {
        GENAI: ("onnx-genai", 512), VLLM: ("vllm", 512), IRIS: ("predictive", None)}
    assert all(c["threads"] >= 1 for c in cards.values())

    questions = ["What is the capital of France?", "Name a primary colour.",
                 "What is two plus two?", "Say something about cats."]
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        chats = [(m, q, pool.submit(chat, server, m, q)) for q in questions for m in (GENAI, VLLM)]
        predictions = [(i, pool.submit(predict, server, x[i:i + 8].tolist()))
                       for i in range(0, 80, 8)]
        for m, q, f in chats:
            assert f.result().strip(), (m, q)
        for i, f in predictions:
            assert np.array_equal(np.array(f.result()["output_label_0"]),
                                  model.predict(x[i:i + 8])), i
    # The same greedy question on each runtime, alone, matches what it said under load.
    for m in (GENAI, VLLM):
        assert chat(server, m, questions[0]) == [f.result() for mm, q, f in chats
                                                if mm == m and q == questions[0]][0]


def test_kiln_ps_lists_what_the_server_holds(kiln_bin, server):
    res = subprocess.run([str(kiln_bin), "ps", "--url", server.base_url, "-o", "json"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    models = {m["name"]: m for m in json.loads(res.stdout)["models"]}
    assert {n: (m["runtime"], m["context_length"], m["in_flight"]) for n, m in models.items()} == {
        GENAI: ("onnx-genai", 512, 0), VLLM: ("vllm", 512, 0), IRIS: ("predictive", None, 0)}
    table = subprocess.run([str(kiln_bin), "ps", "--url", server.base_url], capture_output=True,
                           text=True, timeout=60).stdout.splitlines()
    assert table[0].split()[:3] == ["NAME", "RUNTIME", "CONTEXT"]
    assert sorted(line.split()[0] for line in table[1:]) == sorted([GENAI, VLLM, IRIS])
    closed = subprocess.run([str(kiln_bin), "ps", "--url", "http://127.0.0.1:9"],
                            capture_output=True, text=True, timeout=60)
    assert closed.returncode == 1 and "no Kiln server answers" in closed.stderr


def test_requests_name_their_model_and_errors_list_the_loaded_ones(server):
    client = server.client()
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="nosuch", messages=[{"role": "user", "content": "x"}])
    message = e.value.body["message"]
    assert "'nosuch' does not exist" in message
    assert all(f"'{n}'" in message for n in (GENAI, VLLM, IRIS)), message
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=IRIS, prompt="x", max_tokens=2)
    assert "predictive model" in e.value.body["message"]
    status, body = call(server, "POST", "/v1/predict", {"items": []}, query="?model=nosuch")
    assert status == 404 and IRIS in body["detail"]
    status, body = call(server, "GET", f"/v2/models/{IRIS}")
    assert status == 200 and body["name"] == IRIS
    status, body = call(server, "GET", "/openai/loadedmodels")
    assert sorted(body) == sorted([GENAI, VLLM, IRIS])


def test_metrics_carry_each_model_under_its_name(server):
    from prometheus_client.parser import text_string_to_metric_families
    chat(server, GENAI, "Hi")
    chat(server, VLLM, "Hi")
    predict(server, [[5.1, 3.5, 1.4, 0.2]])
    with urllib.request.urlopen(server.base_url + "/metrics", timeout=30) as r:
        text = r.read().decode()
    names = {}
    for family in text_string_to_metric_families(text):  # refuses a family given twice
        for sample in family.samples:
            names.setdefault(family.name, set()).add(sample.labels.get("model_name"))
    assert names["vllm:generation_tokens"] == {GENAI, VLLM}
    assert names["kiln:predict_requests"] == {IRIS}


def test_unloading_a_model_loses_nothing_in_flight(server):
    # A stream on the vllm model is in flight while the onnx-genai model is unloaded.
    conn = stream_in_flight(server.port, {"model": VLLM, "prompt": "Once upon a time",
                                          "max_tokens": 120, "temperature": 0,
                                          "ignore_eos": True,
                                          "stream_options": {"include_usage": True}}, events=2)
    status, body = call(server, "POST", f"/openai/unload/{GENAI}")
    assert status == 200 and body["unloaded"] == GENAI
    assert read_stream(conn) == ("length", 120)
    with pytest.raises(openai.NotFoundError) as e:
        server.client().chat.completions.create(model=GENAI,
                                                messages=[{"role": "user", "content": "x"}])
    assert e.value.body["message"].endswith(f"this server serves '{IRIS}', '{VLLM}'")

    # A model's own request in flight finishes before the model goes.
    conn = stream_in_flight(server.port, {"model": VLLM, "prompt": "The sea", "max_tokens": 120,
                                          "temperature": 0, "ignore_eos": True,
                                          "stream_options": {"include_usage": True}}, events=2)
    status, listing = call(server, "GET", f"/v1/models/{VLLM}")
    assert listing["in_flight"] == 1
    unloaded = {}
    thread = threading.Thread(target=lambda: unloaded.update(
        zip(("status", "body"), call(server, "POST", f"/openai/unload/{VLLM}"))))
    thread.start()
    # Once it is unloading, the model takes no new requests.
    deadline = time.time() + 30
    while VLLM in call(server, "GET", "/openai/loadedmodels")[1]:
        assert time.time() < deadline
        time.sleep(0.01)
    assert read_stream(conn) == ("length", 120)
    thread.join(60)
    assert unloaded["status"] == 200, unloaded
    assert call(server, "GET", "/openai/loadedmodels")[1] == [IRIS]
    predict(server, [[5.1, 3.5, 1.4, 0.2]])  # the predictive model still answers


def test_models_load_on_first_request_and_unload_when_idle_or_for_room(kiln_bin, tmp_path,
                                                                        smollm2_gguf, iris_onnx):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "tiny.gguf").symlink_to(smollm2_gguf)
    (folder / "flowers.onnx").symlink_to(iris_onnx[0])
    srv = KilnServer(kiln_bin, [], "--models-dir", folder, "--max-loaded-models", "1",
                     "--max-model-len", "512", served_name=None,
                     env={"KILN_HOME": str(tmp_path / "home")})
    try:
        assert call(srv, "GET", "/openai/loadedmodels")[1] == []
        # Two requests for the same model while it loads: one load, both answered.
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            replies = list(pool.map(lambda q: chat(srv, "tiny", q), ["Hi", "Hello"]))
        assert all(r.strip() for r in replies)
        assert srv.output().count("loaded 'tiny' for a request") == 1
        assert call(srv, "GET", "/openai/loadedmodels")[1] == ["tiny"]
        # The predictive model takes the one place: the idle generative model makes room.
        data = base64.b64encode(json.dumps([[5.1, 3.5, 1.4, 0.2]]).encode()).decode()
        status, body = call(srv, "POST", "/v1/predict", {"items": [
            {"content_type": "application/json", "encoder": "base64", "data": data}]},
            query="?model=flowers")
        assert status == 200, body
        assert call(srv, "GET", "/openai/loadedmodels")[1] == ["flowers"]
        assert "unloaded 'tiny' to make room for 'flowers'" in srv.output()
        # While a stream holds one model, the other cannot take its place.
        conn = stream_in_flight(srv.port, {"model": "tiny", "prompt": "Once", "max_tokens": 200,
                                           "ignore_eos": True, "stream_options":
                                           {"include_usage": True}}, events=2)
        status, body = call(srv, "POST", "/v1/predict", {"items": []}, query="?model=flowers")
        assert status == 503 and "busy" in body["detail"], body
        assert read_stream(conn) == ("length", 200)
        with pytest.raises(openai.NotFoundError) as e:
            chat(srv, "nothing-here", "Hi")
        assert "no model 'nothing-here'" in e.value.body["message"]
    finally:
        srv.stop()

    srv = KilnServer(kiln_bin, [], "--models-dir", folder, "--idle-unload-seconds", "0.5",
                     "--max-model-len", "512", served_name=None,
                     env={"KILN_HOME": str(tmp_path / "home")})
    try:
        assert chat(srv, "tiny", "Hi").strip()
        deadline = time.time() + 30
        while call(srv, "GET", "/openai/loadedmodels")[1] or \
                "unloaded 'tiny': idle for" not in srv.output():
            assert time.time() < deadline, srv.output()
            time.sleep(0.05)
        assert chat(srv, "tiny", "Hi again").strip()  # and it comes back when asked for
    finally:
        srv.stop()
