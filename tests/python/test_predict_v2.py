"""The Open Inference Protocol (v2) beside /v1/predict, called by the official Triton HTTP
client (tritonclient[http]) unmodified: health, metadata, and inference with JSON tensors and
with the binary tensor data extension, checked against scikit-learn."""
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from kiln_server import KilnServer


@pytest.fixture(scope="module")
def iris_v2(tmp_path_factory):
    """A logistic regression on iris exported twice: probabilities as a tensor (zipmap off) and
    as ZipMap's maps."""
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    x, y = load_iris(return_X_y=True)
    x = x.astype(np.float32)
    model = LogisticRegression(max_iter=500).fit(x, y)
    folder = tmp_path_factory.mktemp("v2")
    tensor = folder / "tensor.onnx"
    tensor.write_bytes(to_onnx(model, x[:1], options={"zipmap": False}).SerializeToString())
    maps = folder / "maps.onnx"
    maps.write_bytes(to_onnx(model, x[:1]).SerializeToString())
    return x, model, tensor, maps


@pytest.fixture(scope="module")
def tensor_server(kiln_bin, iris_v2):
    server = KilnServer(kiln_bin, iris_v2[2], served_name="iris", ready_path="/ready")
    yield server
    server.stop()


def client(server):
    return triton.InferenceServerClient(f"127.0.0.1:{server.port}")


def test_health_and_metadata(tensor_server):
    c = client(tensor_server)
    assert c.is_server_live()
    assert c.is_server_ready()
    assert c.is_model_ready("iris")
    assert not c.is_model_ready("other")
    meta = c.get_model_metadata("iris")
    assert meta["name"] == "iris"
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]
    assert meta["outputs"] == [{"name": "label", "datatype": "INT64", "shape": [-1]},
                               {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}]
    assert "binary_tensor_data" in c.get_server_metadata()["extensions"]
    with pytest.raises(InferenceServerException, match="no model 'other'"):
        c.get_model_metadata("other")


@pytest.mark.parametrize("binary", [False, True])
def test_infer_equals_scikit_learn(tensor_server, iris_v2, binary):
    x, model, _, _ = iris_v2
    c = client(tensor_server)
    inp = triton.InferInput("X", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    outputs = [triton.InferRequestedOutput("probabilities", binary_data=binary),
               triton.InferRequestedOutput("label", binary_data=not binary)]
    result = c.infer("iris", [inp], outputs=outputs, request_id="r1")
    assert result.get_response()["id"] == "r1"
    np.testing.assert_array_equal(result.as_numpy("label"), model.predict(x))
    probabilities = result.as_numpy("probabilities")
    assert probabilities.dtype == np.float32 and probabilities.shape == (150, 3)
    np.testing.assert_allclose(probabilities, model.predict_proba(x), atol=1e-5, rtol=0)
    # Without requested outputs the client asks for every output in binary.
    every = c.infer("iris", [inp])
    np.testing.assert_array_equal(every.as_numpy("label"), model.predict(x))


def test_zipmap_outputs_come_as_json_text_per_row(kiln_bin, iris_v2):
    import json
    x, model, _, maps = iris_v2
    server = KilnServer(kiln_bin, maps, served_name="maps", ready_path="/ready")
    try:
        c = client(server)
        inp = triton.InferInput("X", [3, 4], "FP32")
        inp.set_data_from_numpy(x[:3], binary_data=True)
        for binary in (False, True):
            result = c.infer("maps", [inp], outputs=[
                triton.InferRequestedOutput("output_probability", binary_data=binary)])
            rows = result.as_numpy("output_probability")
            assert rows.shape == (3,)
            got = [[json.loads(r)[str(k)] for k in model.classes_] for r in rows]
            np.testing.assert_allclose(got, model.predict_proba(x[:3]), atol=1e-5, rtol=0)
    finally:
        server.stop()


def test_bad_requests_say_what_is_wrong(tensor_server, iris_v2):
    x = iris_v2[0]
    c = client(tensor_server)

    def expect(match, name="X", shape=(2, 4), datatype="FP32", data=None, binary=True):
        data = data if data is not None else x[:2]
        inp = triton.InferInput(name, list(data.shape), datatype)
        inp.set_data_from_numpy(data, binary_data=binary)
        inp.set_shape(list(shape))  # the client checks data against shape; the server must too
        with pytest.raises(InferenceServerException, match=match):
            c.infer("iris", [inp])
        # and the server goes on
        ok = triton.InferInput("X", [1, 4], "FP32")
        ok.set_data_from_numpy(x[:1])
        assert c.infer("iris", [ok]).as_numpy("label").shape == (1,)

    expect("the model's input is 'X'", name="Y")
    expect("datatype must be FP32", datatype="FP64", data=x[:2].astype(np.float64))
    expect(r"shape \[2, 5\]", shape=(2, 5), data=np.zeros((2, 5), np.float32))
    expect("holds 24 bytes; shape \\[2, 4\\]", shape=(2, 4), data=x[:2, :3].copy())
    expect("holds 6 elements", shape=(2, 4), data=x[:2, :3].copy(), binary=False)
    with pytest.raises(InferenceServerException, match="no output 'nope'"):
        inp = triton.InferInput("X", [1, 4], "FP32")
        inp.set_data_from_numpy(x[:1])
        c.infer("iris", [inp], outputs=[triton.InferRequestedOutput("nope")])


def test_forest_and_gradient_boosting_through_v2_equal_scikit_learn(kiln_bin, tmp_path):
    from skl2onnx import to_onnx
    from sklearn.datasets import load_diabetes, load_iris
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier
    x, y = load_iris(return_X_y=True)
    x = x.astype(np.float32)
    forest = RandomForestClassifier(n_estimators=20, max_depth=5, random_state=0).fit(x, y)
    (tmp_path / "forest.onnx").write_bytes(
        to_onnx(forest, x[:1], options={"zipmap": False}).SerializeToString())
    xd, yd = load_diabetes(return_X_y=True)
    xd = xd.astype(np.float32)
    boost = GradientBoostingRegressor(n_estimators=50, max_depth=3, random_state=0).fit(xd, yd)
    (tmp_path / "boost.onnx").write_bytes(to_onnx(boost, xd[:1]).SerializeToString())
    for name, data, check in [
            ("forest", x, lambda r: (
                np.testing.assert_array_equal(r.as_numpy("label"), forest.predict(x)),
                np.testing.assert_allclose(r.as_numpy("probabilities"), forest.predict_proba(x),
                                           atol=1e-5, rtol=0))),
            ("boost", xd, lambda r: np.testing.assert_allclose(
                r.as_numpy("variable").reshape(-1), boost.predict(xd), rtol=1e-5, atol=0))]:
        server = KilnServer(kiln_bin, tmp_path / f"{name}.onnx", served_name=name,
                            ready_path="/ready")
        try:
            inp = triton.InferInput(client(server).get_model_metadata(name)["inputs"][0]["name"],
                                    list(data.shape), "FP32")
            for binary in (False, True):
                inp.set_data_from_numpy(data, binary_data=binary)
                check(client(server).infer(name, [inp]))
        finally:
            server.stop()
