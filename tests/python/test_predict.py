"""/v1/predict on classic ONNX models: scikit-learn models trained here and exported with
skl2onnx (ONNX-ML operators, ZipMap's sequences of maps), and small graphs built with the `onnx`
package for the input types and a several-output, detection-style model. Predictions are
checked against scikit-learn (or numpy), errors for what they say, and the server for going on
serving after each."""
import base64
import concurrent.futures
import json
import urllib.error
import urllib.request

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from kiln_server import KilnServer


def export(model, sample, path):
    from skl2onnx import to_onnx
    path.write_bytes(to_onnx(model, sample).SerializeToString())
    return path


@pytest.fixture(scope="module")
def iris():
    from sklearn.datasets import load_iris
    x, y = load_iris(return_X_y=True)
    return x.astype(np.float32), y


@pytest.fixture(scope="module")
def iris_models(iris, tmp_path_factory):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    x, y = iris
    folder = tmp_path_factory.mktemp("iris")
    logistic = LogisticRegression(max_iter=500).fit(x, y)
    forest = RandomForestClassifier(n_estimators=20, max_depth=5, random_state=0).fit(x, y)
    return {"logistic": (logistic, export(logistic, x[:1], folder / "logistic.onnx")),
            "forest": (forest, export(forest, x[:1], folder / "forest.onnx"))}


def post(server, body, path="/v1/predict", raw=None, headers=None):
    data = raw if raw is not None else json.dumps(body).encode()
    req = urllib.request.Request(server.base_url + path, data=data,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), dict(e.headers)


def item(tensor, content_type="application/json"):
    data = base64.b64encode(json.dumps(tensor).encode()).decode()
    return {"content_type": content_type, "encoder": "base64", "data": data}


def predict(server, tensor):
    status, body, _ = post(server, {"items": [item(tensor)]})
    assert status == 200, body
    assert body["items"][0]["content_type"] == "application/json"
    assert body["items"][0]["encoder"] == "base64"
    return body, json.loads(base64.b64decode(body["items"][0]["data"]))


def get(server, path):
    try:
        with urllib.request.urlopen(server.base_url + path, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def serve(kiln_bin, model, name, *args):
    return KilnServer(kiln_bin, model, *args, served_name=name, ready_path="/ready")


@pytest.mark.parametrize("kind", ["logistic", "forest"])
def test_iris_classifiers_equal_scikit_learn(kiln_bin, iris, iris_models, kind):
    x, _ = iris
    model, path = iris_models[kind]
    server = serve(kiln_bin, path, kind)
    try:
        body, outputs = predict(server, x.tolist())
        assert body["metadata"]["model_id"] == kind
        assert body["metadata"]["batch_size"] == len(x)  # the run's batch: this request's rows
        assert body["metadata"]["inference_time_ms"] >= 0
        assert list(outputs) == ["output_label_0", "output_probability_1"]
        np.testing.assert_array_equal(outputs["output_label_0"], model.predict(x))
        # ZipMap's maps: {class: probability} per row, classes as JSON keys.
        probabilities = np.array([[row[str(c)] for c in model.classes_]
                                  for row in outputs["output_probability_1"]])
        np.testing.assert_allclose(probabilities, model.predict_proba(x), atol=1e-5, rtol=0)
        # One row without its batch dimension.
        _, one = predict(server, x[60].tolist())
        assert one["output_label_0"] == [int(model.predict(x[60:61])[0])]
    finally:
        server.stop()


def test_gradient_boosted_regressor_equals_scikit_learn(kiln_bin, tmp_path):
    from sklearn.datasets import load_diabetes
    from sklearn.ensemble import GradientBoostingRegressor
    x, y = load_diabetes(return_X_y=True)
    model = GradientBoostingRegressor(n_estimators=50, max_depth=3, random_state=0).fit(x, y)
    # ONNX Runtime's tree ensembles run in float; scikit-learn's trees compare float32 features
    # too, so every sample takes the same leaves, and the sums (about 150) agree to float's
    # precision: 1e-5 relative.
    x = x.astype(np.float32)
    path = export(model, x[:1], tmp_path / "diabetes.onnx")
    server = serve(kiln_bin, path, "diabetes")
    try:
        _, outputs = predict(server, x.tolist())
        (name, values), = outputs.items()
        assert name == "variable_0"
        np.testing.assert_allclose(np.array(values).reshape(-1), model.predict(x), rtol=1e-5,
                                   atol=0)
    finally:
        server.stop()


def test_model_card_describes_the_graph(kiln_bin, iris_models):
    server = serve(kiln_bin, iris_models["logistic"][1], "logistic")
    try:
        status, card = get(server, "/v1/model")
        assert status == 200
        assert card["id"] == card["name"] == "logistic"
        assert card["input_shape"] == [-1, 4]
        assert card["input_type"] == "tensor(float)"
        assert card["outputs"] == [
            {"name": "output_label", "shape": [-1], "type": "tensor(int64)"},
            {"name": "output_probability", "shape": [], "type": "seq(map(int64,tensor(float)))"}]
        assert card["batch_size"] == 32  # the batch dimension is open: requests share runs
        assert card["execution_provider"] == "CPUExecutionProvider"
        assert card["status"] == "ready"
        assert get(server, "/health") == (200, {"status": "alive"})
        assert get(server, "/ready") == (200, {"status": "ready"})
    finally:
        server.stop()


def typed_model(path, elem_type, numpy_type):
    """x (elem_type, [-1, 3]) -> y = sum over the row of float(x), and z = x as given."""
    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
         helper.make_node("ReduceSum", ["xf", "axes"], ["y"], keepdims=0),
         helper.make_node("Identity", ["x"], ["z"])],
        "typed", [helper.make_tensor_value_info("x", elem_type, [None, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None]),
         helper.make_tensor_value_info("z", elem_type, [None, 3])],
        [helper.make_tensor("axes", TensorProto.INT64, [1], [1])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.mark.parametrize("elem_type,numpy_type,values", [
    (TensorProto.FLOAT16, np.float16, [[0.5, 1.25, -2.0], [65504.0, 0.0, 1e-3]]),
    (TensorProto.FLOAT, np.float32, [[0.1, 2.5, -3.0], [1e30, 0.0, 7.0]]),
    (TensorProto.DOUBLE, np.float64, [[0.1, 2.5, -3.0], [1e-300, 0.0, 7.123456789012345]]),
    (TensorProto.INT32, np.int32, [[1, -2, 3], [2147483647, 0, -2147483648]]),
    (TensorProto.INT64, np.int64, [[1, -2, 3], [9007199254740993, 0, -5]]),
    (TensorProto.UINT8, np.uint8, [[0, 255, 7], [1, 2, 3]]),
])
def test_each_input_type_reaches_the_model_exactly(kiln_bin, tmp_path, elem_type, numpy_type,
                                                    values):
    server = serve(kiln_bin, typed_model(tmp_path / "typed.onnx", elem_type, numpy_type), "typed")
    try:
        _, outputs = predict(server, values)
        x = np.array(values, dtype=numpy_type)
        np.testing.assert_array_equal(np.array(outputs["z_1"], dtype=numpy_type), x)
        np.testing.assert_allclose(outputs["y_0"], x.astype(np.float32).sum(axis=1), rtol=1e-6)
    finally:
        server.stop()


def test_detection_style_model_returns_every_output(kiln_bin, tmp_path):
    # x [1, 8, 6]: 8 candidate boxes of (x0, y0, x1, y1, score class 0, score class 1).
    graph = helper.make_graph(
        [helper.make_node("Slice", ["x", "s0", "s4", "ax"], ["boxes"]),
         helper.make_node("Slice", ["x", "s4", "s6", "ax"], ["class_scores"]),
         helper.make_node("ReduceMax", ["class_scores", "last"], ["scores"], keepdims=0),
         helper.make_node("ArgMax", ["class_scores"], ["labels"], axis=2, keepdims=0)],
        "detect", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 6])],
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 8, 4]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 8]),
         helper.make_tensor_value_info("labels", TensorProto.INT64, [1, 8])],
        [helper.make_tensor("s0", TensorProto.INT64, [1], [0]),
         helper.make_tensor("s4", TensorProto.INT64, [1], [4]),
         helper.make_tensor("s6", TensorProto.INT64, [1], [6]),
         helper.make_tensor("ax", TensorProto.INT64, [1], [2]),
         helper.make_tensor("last", TensorProto.INT64, [1], [2])])
    path = tmp_path / "detect.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    x = np.random.default_rng(0).random((1, 8, 6)).astype(np.float32)
    server = serve(kiln_bin, path, "detect")
    try:
        _, outputs = predict(server, x.tolist())
        assert list(outputs) == ["boxes_0", "scores_1", "labels_2"]
        np.testing.assert_array_equal(np.array(outputs["boxes_0"], dtype=np.float32), x[:, :, :4])
        np.testing.assert_array_equal(np.array(outputs["scores_1"], dtype=np.float32),
                                      x[:, :, 4:].max(axis=2))
        np.testing.assert_array_equal(outputs["labels_2"], x[:, :, 4:].argmax(axis=2))
    finally:
        server.stop()


def test_bad_requests_get_clear_errors_and_the_server_keeps_serving(kiln_bin, iris, iris_models):
    x, _ = iris
    model, path = iris_models["logistic"]
    server = serve(kiln_bin, path, "logistic")

    def expect(status, needle, body=None, raw=None):
        got, reply, _ = post(server, body, raw=raw)
        assert got == status, reply
        assert needle in reply["detail"], reply
        assert reply["error"]["message"] == reply["detail"]
        assert reply["error"]["code"] == status
        # and the next good request is answered
        _, outputs = predict(server, x[:3].tolist())
        assert outputs["output_label_0"] == model.predict(x[:3]).tolist()

    try:
        expect(400, "shape [3]", {"items": [item([1.0, 2.0, 3.0])]})
        expect(400, "shape [2, 5]", {"items": [item([[1.0] * 5] * 2)]})
        expect(400, "shape [1, 2, 4]", {"items": [item([[[1.0] * 4] * 2])]})
        expect(400, "rows of a tensor", {"items": [item([[1.0] * 4, [1.0] * 3])]})
        expect(400, "element [0, 1] is string, not a number",
               {"items": [item([[1.0, "two", 3.0, 4.0]])]})
        expect(400, "exactly one item; it holds 2", {"items": [item(x[:1].tolist())] * 2})
        expect(400, "exactly one item; it holds 0", {"items": []})
        expect(400, "not base64", {"items": [{"content_type": "application/json",
                                              "encoder": "base64", "data": "%%%not base64"}]})
        expect(400, "not JSON", {"items": [{"content_type": "application/json",
                                            "encoder": "base64",
                                            "data": base64.b64encode(b"[1, 2,").decode()}]})
        expect(400, "the request body is not JSON", raw=b"{\"items\": [")
        expect(400, "items", {"inputs": []})
        expect(415, "supported: application/json",
               {"items": [item("some text", content_type="text/plain")]})
        status, reply = get(server, "/v1/nothing")
        assert status == 404 and "no route" in reply["detail"]
    finally:
        server.stop()


def test_integer_input_refuses_fractions_and_out_of_range_values(kiln_bin, tmp_path):
    server = serve(kiln_bin, typed_model(tmp_path / "u8.onnx", TensorProto.UINT8, np.uint8), "u8")
    try:
        for values, needle in [([[1, 2.5, 3]], "is 2.5, not an integer"),
                               ([[1, 256, 3]], "is 256, outside tensor(uint8)'s range"),
                               ([[1, -1, 3]], "is -1, outside tensor(uint8)'s range")]:
            status, reply, _ = post(server, {"items": [item(values)]})
            assert status == 400 and needle in reply["detail"], reply
    finally:
        server.stop()


def test_models_that_cannot_be_served_fail_at_start_naming_why(kiln_bin, tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["c"])], "two",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [None, 2]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [None, 2])])
    two = tmp_path / "two.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), two)
    for path, needles in [(two, ["two.onnx", "exactly one input", "a tensor(float) [-1, 2]",
                                 "b tensor(float) [-1, 2]"]),
                          (tmp_path / "missing.onnx", ["missing.onnx", "no such file"])]:
        server = KilnServer(kiln_bin, path, served_name="bad", wait=False, ready_path="/ready")
        assert server.proc.wait(60) == 1
        log = server.output()
        for needle in needles:
            assert needle in log, log
        server.stop()


def bursts(server, make_body, clients, check, until, tries=20):
    """Sends `clients` requests at once, `check(i, status, reply)` for each, until `until(replies)`
    holds for a burst; fails after `tries` bursts. Requests that arrive while a run is going
    share the next one, so a burst of concurrent clients is batched in practice; which ones
    share a run is up to the timing, and every answer is checked whatever it was."""
    for _ in range(tries):
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            replies = list(pool.map(lambda i: post(server, make_body(i))[:2], range(clients)))
        for i, (status, reply) in enumerate(replies):
            check(i, status, reply)
        if until(replies):
            return
    raise AssertionError(f"no burst of {clients} concurrent requests satisfied the condition")


def batched(replies):
    return any(status == 200 and reply["metadata"]["batch_size"] > 1 for status, reply in replies)


def outputs_of(reply):
    return json.loads(base64.b64decode(reply["items"][0]["data"]))


def test_concurrent_clients_each_get_their_own_prediction(kiln_bin, iris, iris_models):
    x, _ = iris
    model, path = iris_models["forest"]
    server = serve(kiln_bin, path, "forest")
    try:
        rows = list(range(0, 150, 150 // 64))[:64]
        want = model.predict_proba(x[rows])
        labels = model.predict(x[rows])

        def check(i, status, reply):
            assert status == 200, reply
            outputs = outputs_of(reply)
            assert outputs["output_label_0"] == [int(labels[i])]
            got = [outputs["output_probability_1"][0][str(c)] for c in model.classes_]
            np.testing.assert_allclose(got, want[i], atol=1e-5, rtol=0)

        bursts(server, lambda i: {"items": [item(x[rows[i]].tolist())]}, 64, check, batched)
        runs = server.metric("kiln:predict_batch_size_count")
        requests = server.metric("kiln:predict_requests_total", status="ok")
        assert runs < requests  # some runs served several requests
        assert server.metric("kiln:predict_batch_size_sum") == requests  # one row each
    finally:
        server.stop()


def test_rows_of_different_lengths_run_apart_and_each_is_right(kiln_bin, tmp_path):
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x", "axes"], ["total"], keepdims=0)], "sum",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, None])],
        [helper.make_tensor_value_info("total", TensorProto.FLOAT, [None])],
        [helper.make_tensor("axes", TensorProto.INT64, [1], [1])])
    path = tmp_path / "sum.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    server = serve(kiln_bin, path, "sum")
    try:
        def row(i):
            return [float(i + j) for j in range(1 + i % 4)]  # lengths 1 to 4

        def check(i, status, reply):
            assert status == 200, reply
            assert outputs_of(reply)["total_0"] == [sum(row(i))]

        bursts(server, lambda i: {"items": [item(row(i))]}, 32, check, batched)
    finally:
        server.stop()


def test_a_request_the_model_refuses_fails_alone_in_its_batch(kiln_bin, tmp_path):
    # y = table[x]: an index past the table passes every check but the run's own, so a batch
    # holding it fails in ONNX Runtime; each request then runs alone and only that one fails.
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "x"], ["y"], axis=0)], "lookup",
        [helper.make_tensor_value_info("x", TensorProto.INT64, [None, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor("table", TensorProto.FLOAT, [10], [float(10 * i) for i in range(10)])])
    path = tmp_path / "lookup.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    server = serve(kiln_bin, path, "lookup")
    try:
        bad = 5

        def check(i, status, reply):
            if i == bad:
                assert status == 400 and "the model refused the input" in reply["detail"], reply
            else:
                assert status == 200, reply
                assert outputs_of(reply)["y_0"] == [[float(10 * (i % 10))]]

        bursts(server, lambda i: {"items": [item([[50 if i == bad else i % 10]])]}, 32, check,
               batched)
    finally:
        server.stop()


def test_api_key_guards_the_v1_routes(kiln_bin, iris, iris_models):
    x, _ = iris
    server = KilnServer(kiln_bin, iris_models["logistic"][1], "--api-key", "sesame",
                        served_name="logistic", ready_path="/ready")
    try:
        status, reply, _ = post(server, {"items": [item(x[:1].tolist())]})
        assert status == 401 and "API key" in reply["detail"]
        status, reply, _ = post(server, {"items": [item(x[:1].tolist())]},
                                headers={"Authorization": "Bearer sesame"})
        assert status == 200, reply
        assert get(server, "/health")[0] == 200  # probes need no key
    finally:
        server.stop()


def slow_model(path):
    """x [1, 1] -> y: x broadcast to 2048 x 2048, then ten 2048^3 matrix products (about 170
    GFLOP, a second or more on two cores): a request that stays in flight while others come."""
    w = np.full((2048, 2048), 1.0 / 2048, dtype=np.float32)
    nodes = [helper.make_node("Expand", ["x", "size"], ["h0"])]
    for i in range(10):
        nodes.append(helper.make_node("MatMul", [f"h{i}", "w"], [f"h{i + 1}"]))
    nodes.append(helper.make_node("ReduceMean", ["h10"], ["y"], keepdims=0))
    graph = helper.make_graph(
        nodes, "slow", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
        [helper.make_tensor("size", TensorProto.INT64, [2], [2048, 2048]),
         numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_a_full_queue_answers_429_and_the_request_in_flight_finishes(kiln_bin, tmp_path):
    server = serve(kiln_bin, slow_model(tmp_path / "slow.onnx"), "slow",
                   "--max-queued-requests", "1")
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            first = pool.submit(post, server, {"items": [item([[2.0]])]})
            server.wait_for(lambda: server.metric("kiln:predict_queue_depth") == 1,
                            "the first request is in flight")
            status, reply, headers = post(server, {"items": [item([[3.0]])]})
            assert status == 429, reply
            assert headers["Retry-After"] == "1"
            assert reply["queue_depth"] == 1 and reply["retry_after"] == 1
            assert "the queue is full" in reply["detail"]
            # Bad requests are refused at once, the request in flight goes on.
            status, reply, _ = post(server, {"items": []})
            assert status == 400, reply
            assert not first.done()
            status, reply, _ = first.result(timeout=600)
            assert status == 200, reply
            outputs = json.loads(base64.b64decode(reply["items"][0]["data"]))
            assert outputs["y_0"] == pytest.approx(2.0, rel=1e-4)
        assert server.metric("kiln:predict_queue_depth") == 0
    finally:
        server.stop()


def test_device_cuda_runs_on_cuda_where_onnx_runtime_has_it_else_on_cpu_saying_so(
        kiln_bin, iris, iris_models):
    # Kiln loads the ONNX Runtime library of the PyPI wheel this venv has: its providers are
    # Kiln's.
    import onnxruntime
    has_cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    x, _ = iris
    server = serve(kiln_bin, iris_models["logistic"][1], "logistic", "--device", "cuda")
    try:
        provider = get(server, "/v1/model")[1]["execution_provider"]
        assert provider == ("CUDAExecutionProvider" if has_cuda else "CPUExecutionProvider")
        assert has_cuda or "CUDA execution provider unavailable" in server.output()
        _, outputs = predict(server, x[:2].tolist())
        assert len(outputs["output_label_0"]) == 2
    finally:
        server.stop()


def test_folders_and_the_workload_flag_pick_the_predictive_server(kiln_bin, tmp_path, iris,
                                                                 iris_models, smollm2_genai):
    import shutil
    x, _ = iris
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(iris_models["logistic"][1], one / "model.onnx")
    server = serve(kiln_bin, one, "one")
    try:
        _, outputs = predict(server, x[:1].tolist())
        assert outputs["output_label_0"] == [0]
    finally:
        server.stop()
    two = tmp_path / "two"
    two.mkdir()
    shutil.copy(iris_models["logistic"][1], two / "a.onnx")
    shutil.copy(iris_models["forest"][1], two / "b.onnx")
    for path, args, needles in [
            (two, [], ["several .onnx files (a.onnx, b.onnx", "name one"]),
            (smollm2_genai, ["--workload", "predictive"],
             ["ONNX Runtime GenAI folder", "not a predictive model"])]:
        bad = KilnServer(kiln_bin, path, *args, served_name="bad", wait=False,
                         ready_path="/ready")
        assert bad.proc.wait(60) == 1
        for needle in needles:
            assert needle in bad.output(), bad.output()
        bad.stop()
