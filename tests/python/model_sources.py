"""Real servers on loopback that `kiln model pull` fetches from in the tests: an HTTP file server
that speaks Range requests and can misbehave on purpose (cut a body short, ignore Range, go
slowly, serve wrong bytes), the part of the Hugging Face Hub's HTTP API that a pull uses (a
repository's file list with sizes, LFS SHA-256s and git blob ids; /resolve/ URLs redirecting
LFS files to a CDN path, as the Hub does), and Debian's docker-registry for OCI artifacts."""
import hashlib
import json
import os
import pathlib
import re
import socket
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def git_blob_id(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Behaviour:
    """How the server treats one file: cut_after (close the connection after this many body
    bytes, for the first `cuts` requests), ignore_range (answer 200 with the whole body),
    bytes_per_second (go slowly), corrupt (flip a byte of what is sent)."""

    def __init__(self, cut_after=None, cuts=1, ignore_range=False, bytes_per_second=None,
                 corrupt=False):
        self.cut_after, self.cuts = cut_after, cuts
        self.ignore_range, self.bytes_per_second, self.corrupt = (ignore_range,
                                                                  bytes_per_second, corrupt)


class SourceServer:
    """Serves files at /files/<name> and Hub repositories at /api/models/... and /<repo>/resolve/
    ... Every request is logged as (method, path, Range header or None)."""

    def __init__(self):
        self.files = {}       # URL path -> bytes
        self.behaviour = {}   # URL path -> Behaviour
        self.repos = {}       # "org/repo" -> (commit sha, {file name: bytes})
        self.log = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                with server.lock:
                    server.log.append(("GET", self.path, self.headers.get("Range")))
                server.handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def add_file(self, name, data, behaviour=None):
        self.files["/files/" + name] = data
        if behaviour:
            self.behaviour["/files/" + name] = behaviour
        return self.url + "/files/" + name

    def add_repo(self, repo, files, sha="0123456789abcdef0123456789abcdef01234567", lfs_over=1024):
        """A Hub repository: files over `lfs_over` bytes are LFS files (SHA-256 listed,
        /resolve/ redirects to /cdn/<sha256>), the others plain git blobs."""
        self.repos[repo] = (sha, files, lfs_over)
        for name, data in files.items():
            if len(data) > lfs_over:
                self.files["/cdn/" + hashlib.sha256(data).hexdigest()] = data

    def requests_for(self, suffix):
        with self.lock:
            return [entry for entry in self.log if entry[1].endswith(suffix)]

    def handle(self, h):
        path = h.path.split("?")[0]
        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/revision/([^/]+)", path)
        if m:
            repo = urllib.request.unquote(m.group(1))
            if repo not in self.repos:
                return self.send(h, 404, b'{"error": "Repository not found"}')
            sha, files, lfs_over = self.repos[repo]
            siblings = []
            for name, data in sorted(files.items()):
                s = {"rfilename": name, "size": len(data), "blobId": git_blob_id(data)}
                if len(data) > lfs_over:
                    s["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                                "pointerSize": 134}
                siblings.append(s)
            body = json.dumps({"id": repo, "sha": sha, "siblings": siblings}).encode()
            return self.send(h, 200, body, "application/json")
        m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if m:
            repo, name = m.group(1), urllib.request.unquote(m.group(3))
            if repo not in self.repos or name not in self.repos[repo][1]:
                return self.send(h, 404, b"Entry not found")
            _, files, lfs_over = self.repos[repo]
            data = files[name]
            if len(data) > lfs_over:  # the Hub sends LFS files to its CDN
                h.send_response(302)
                h.send_header("Location", "/cdn/" + hashlib.sha256(data).hexdigest())
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            return self.send_ranged(h, path, data)
        if path in self.files:
            return self.send_ranged(h, path, self.files[path])
        self.send(h, 404, b"not found")

    def send(self, h, status, body, content_type="text/plain"):
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def send_ranged(self, h, path, data):
        b = self.behaviour.get(path, Behaviour())
        start = 0
        rng = h.headers.get("Range")
        if rng and not b.ignore_range:
            m = re.fullmatch(r"bytes=(\d+)-", rng)
            start = int(m.group(1))
            if start >= len(data):
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{len(data)}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            h.send_response(206)
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            h.send_response(200)
        body = data[start:]
        if b.corrupt and body:
            body = bytes([body[0] ^ 1]) + body[1:]
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Accept-Ranges", "bytes")
        h.end_headers()
        cut = None
        with self.lock:
            if b.cut_after is not None and b.cuts > 0:
                b.cuts -= 1
                cut = b.cut_after
        chunk = 64 * 1024 if b.bytes_per_second is None else max(1, b.bytes_per_second // 20)
        sent = 0
        try:
            while sent < len(body):
                piece = body[sent:sent + chunk]
                if cut is not None and sent + len(piece) > cut:
                    piece = piece[:cut - sent]
                    h.wfile.write(piece)
                    h.wfile.flush()
                    h.connection.shutdown(socket.SHUT_RDWR)  # cut off mid-body
                    h.close_connection = True
                    return
                h.wfile.write(piece)
                sent += len(piece)
                if b.bytes_per_second is not None:
                    h.wfile.flush()
                    time.sleep(len(piece) / b.bytes_per_second)
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True


class Registry:
    """Debian's docker-registry (the Distribution project's registry) on a loopback port, storing
    in a temporary folder; `htpasswd` (a file of user:bcrypt lines) turns on Basic auth."""

    def __init__(self, root, htpasswd=None):
        root = pathlib.Path(root)
        root.mkdir(parents=True, exist_ok=True)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.host = f"127.0.0.1:{self.port}"
        config = ["version: 0.1", "log:", "  level: error", "storage:", "  filesystem:",
                  f"    rootdirectory: {root / 'data'}", "  delete:", "    enabled: true",
                  "http:", f"  addr: 127.0.0.1:{self.port}"]
        if htpasswd:
            config += ["auth:", "  htpasswd:", "    realm: kiln-test", f"    path: {htpasswd}"]
        (root / "config.yml").write_text("\n".join(config) + "\n")
        self.log = open(root / "registry.log", "wb")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(root / "config.yml")],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while True:
            assert self.proc.poll() is None, (root / "registry.log").read_text()
            try:
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2)
                break
            except urllib.error.HTTPError as e:  # 401 with auth on: it is up
                if e.code == 401:
                    break
            except OSError:
                pass
            assert time.time() < deadline, "docker-registry did not start"
            time.sleep(0.1)

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.log.close()
