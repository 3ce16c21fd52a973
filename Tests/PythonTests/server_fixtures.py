"""Runs the real model-server binary for the end-to-end server tests.

The server is started from $MODEL_SERVER (release build) on free loopback ports with
models copied into a temporary directory; tests talk to it only on 127.0.0.1. Every
wait is bounded. On teardown the server gets SIGTERM and must exit 0 within 30 s (it is
killed, and the test fails, otherwise).

Besides the fixtures (imported by conftest.py) this module holds the helpers the
server tests share: model builders and onnxruntime references, a raw HTTP/1.1 reader
for socket-level tests, the binary tensor extension codec, curl, and polling.
"""
import dataclasses
import functools
import http.client
import json
import os
import pathlib
import signal
import socket
import subprocess
import time

import numpy as np
import onnx
import onnxruntime
import pytest
import requests
from onnx import TensorProto, helper, numpy_helper

# Clients must never go through a proxy: everything here is on 127.0.0.1.
for _variable in ("NO_PROXY", "no_proxy"):
    os.environ[_variable] = ",".join(filter(None, ["127.0.0.1", "localhost", os.environ.get(_variable)]))

HOST = "127.0.0.1"
ROOT = pathlib.Path(__file__).resolve().parents[2]
DIGITS_MODEL = ROOT / "models" / "digits" / "1" / "model.onnx"
DIGITS_SAMPLES = ROOT / "models" / "digits" / "samples"

ATOL = 1e-4
RTOL = 1e-3
READY_TIMEOUT = 30.0  # s from spawn to GET /v2/health/ready == 200
STOP_TIMEOUT = 30.0  # s from SIGTERM to exit
REQUEST_TIMEOUT = 60.0  # s for any single client request
POLL_SECONDS = 1  # --file_system_poll_wait_seconds for every server started here


# --------------------------------------------------------------------------- models

@functools.lru_cache(maxsize=None)
def digits_bytes(factor=1.0):
    """The digits classifier; with factor != 1 the last layer is scaled so that the
    logits are `factor` times larger (same argmax). Versions built with different
    factors are told apart by their outputs."""
    model = onnx.load(str(DIGITS_MODEL))
    if factor != 1.0:
        for initializer in model.graph.initializer:
            if initializer.name in ("w2", "b2"):
                scaled = numpy_helper.to_array(initializer).astype(np.float32) * np.float32(factor)
                initializer.CopyFrom(numpy_helper.from_array(scaled, initializer.name))
    return model.SerializeToString()


@functools.lru_cache(maxsize=None)
def pair_bytes():
    """Two inputs, two outputs: a, b FP32 [batch, 3] -> sum = a + b, diff = a - b."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["sum"]), helper.make_node("Sub", ["a", "b"], ["diff"])],
        "pair",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 3]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["batch", 3]),
         helper.make_tensor_value_info("diff", TensorProto.FLOAT, ["batch", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    return model.SerializeToString()


# The element types the engine computes with: input name -> (ONNX type, numpy dtype, V2 datatype).
DTYPES = {
    "f32": (TensorProto.FLOAT, np.float32, "FP32"),
    "f64": (TensorProto.DOUBLE, np.float64, "FP64"),
    "i8": (TensorProto.INT8, np.int8, "INT8"),
    "u8": (TensorProto.UINT8, np.uint8, "UINT8"),
    "i32": (TensorProto.INT32, np.int32, "INT32"),
    "i64": (TensorProto.INT64, np.int64, "INT64"),
    "b": (TensorProto.BOOL, np.bool_, "BOOL"),
}


@functools.lru_cache(maxsize=None)
def dtypes_bytes():
    """One [n_<name>] input per element type (DTYPES), each echoed by Identity to "<name>_out";
    the lengths are independent."""
    graph = helper.make_graph(
        [helper.make_node("Identity", [name], [f"{name}_out"]) for name in DTYPES],
        "dtypes",
        [helper.make_tensor_value_info(name, onnx_type, [f"n_{name}"]) for name, (onnx_type, _, _) in DTYPES.items()],
        [helper.make_tensor_value_info(f"{name}_out", onnx_type, [f"n_{name}"])
         for name, (onnx_type, _, _) in DTYPES.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    return model.SerializeToString()


@functools.lru_cache(maxsize=None)
def echo_bytes():
    """x FP32 [n] -> y = x (Identity): payloads of any size in and out."""
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "echo",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    return model.SerializeToString()


@functools.lru_cache(maxsize=None)
def slow_bytes(width=1024, layers=128):
    """A deliberately slow model: x FP32 [batch, width] -> y = (tanh . matmul W)^layers (x), one
    shared W, and echo = x. Its time grows linearly with the batch, so a test picks a batch
    that keeps the server busy for as long as it needs (see calibrate_slow)."""
    w = (np.random.default_rng(42).standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
    nodes, previous = [], "x"
    for layer in range(layers):
        nodes.append(helper.make_node("MatMul", [previous, "w"], [f"m{layer}"]))
        previous = "y" if layer == layers - 1 else f"t{layer}"
        nodes.append(helper.make_node("Tanh", [f"m{layer}"], [previous]))
    nodes.append(helper.make_node("Identity", ["x"], ["echo"]))
    graph = helper.make_graph(
        nodes, "slow", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width]),
         helper.make_tensor_value_info("echo", TensorProto.FLOAT, ["batch", width])],
        [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    return model.SerializeToString()


def mobilenet_bytes(keras_models):
    return (keras_models / "mobilenet_v2" / "model.onnx").read_bytes()


@functools.lru_cache(maxsize=None)
def _session(model):
    return onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])


def reference(model, feeds):
    """onnxruntime's outputs {name: array} for serialized `model` and `feeds`."""
    session = _session(model)
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def digits_reference(x, factor=1.0):
    return reference(digits_bytes(factor), {"image": x})["logits"]


def digits_batch():
    """All ten samples, [10, 1, 8, 8] float32; sample k is the digit k."""
    return np.concatenate([np.load(DIGITS_SAMPLES / f"digit_{k}.npy") for k in range(10)]).astype(np.float32)


def assert_close(actual, expected):
    actual = np.asarray(actual, dtype=np.float32)
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    np.testing.assert_allclose(actual, expected, atol=ATOL, rtol=RTOL)


def write_version(model_dir, version, model):
    """Puts `model` (bytes) at model_dir/<version>/model.onnx atomically: the version
    directory is written under a non-numeric name and renamed in."""
    model_dir = pathlib.Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = model_dir / f".staging-{version}-{time.monotonic_ns()}"
    staging.mkdir()
    (staging / "model.onnx").write_bytes(model)
    os.rename(staging, model_dir / str(version))
    return model_dir / str(version)


def make_model_dir(model_dir, versions):
    """TF Serving base path / Triton model directory with versions {number: bytes}."""
    for version, model in versions.items():
        write_version(model_dir, version, model)
    return pathlib.Path(model_dir)


# --------------------------------------------------------------------------- server

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def http_session():
    session = requests.Session()
    session.trust_env = False  # no proxies, no netrc
    return session


class ModelServer:
    """One running model-server process."""

    def __init__(self, binary, args, workdir, env=None):
        self.args = list(map(str, args))
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.rest_port = free_port()
        self.grpc_port = free_port()
        while self.grpc_port == self.rest_port:
            self.grpc_port = free_port()
        self.stdout_path = self.workdir / "stdout.log"
        self.stderr_path = self.workdir / "stderr.log"
        self.command = [str(binary), "--rest_api_port", str(self.rest_port), "--port", str(self.grpc_port),
                        "--file_system_poll_wait_seconds", str(POLL_SECONDS), *self.args]
        with open(self.stdout_path, "wb") as stdout, open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                                            cwd=self.workdir, env={**os.environ, **(env or {})})
        self.http = http_session()
        self.stopped = False
        self.returncode = None

    # ---- addresses
    @property
    def base_url(self):
        return f"http://{HOST}:{self.rest_port}"

    @property
    def host_port(self):
        return f"{HOST}:{self.rest_port}"

    def url(self, path):
        return self.base_url + path

    # ---- output
    def stdout(self):
        return self.stdout_path.read_text(errors="replace")

    def stderr(self):
        return self.stderr_path.read_text(errors="replace")

    def describe(self, limit=6000):
        text = self.stderr()
        if len(text) > limit:
            text = "...\n" + text[-limit:]
        return f"command: {' '.join(self.command)}\nexit code: {self.process.poll()}\nstderr:\n{text}"

    # ---- requests
    def get(self, path, **kwargs):
        kwargs.setdefault("timeout", REQUEST_TIMEOUT)
        return self.http.get(self.url(path), **kwargs)

    def post(self, path, **kwargs):
        kwargs.setdefault("timeout", REQUEST_TIMEOUT)
        return self.http.post(self.url(path), **kwargs)

    def request(self, method, path, **kwargs):
        kwargs.setdefault("timeout", REQUEST_TIMEOUT)
        return self.http.request(method, self.url(path), **kwargs)

    # ---- lifecycle
    def is_ready(self):
        connection = http.client.HTTPConnection(HOST, self.rest_port, timeout=2)
        try:
            connection.request("GET", "/v2/health/ready")
            response = connection.getresponse()
            response.read()
            return response.status == 200
        except OSError:
            return False
        finally:
            connection.close()

    def wait_ready(self, timeout=READY_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if self.is_ready():
                return True
            time.sleep(0.05)
        return False

    def send_signal(self, sig):
        self.process.send_signal(sig)

    def wait_exit(self, timeout=STOP_TIMEOUT):
        """Exit code, or None if still running after `timeout` s."""
        try:
            self.returncode = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self.stopped = True
        return self.returncode

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
        self.returncode = self.process.wait(timeout=STOP_TIMEOUT)
        self.stopped = True

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Signals the server and waits; returns an error text, or None for a clean exit 0."""
        self.http.close()
        if self.stopped:
            code = self.returncode
        elif self.process.poll() is not None:
            code = self.process.returncode
            self.stopped, self.returncode = True, code
            return f"model-server had already exited with {code} before teardown\n{self.describe()}"
        else:
            self.send_signal(sig)
            code = self.wait_exit(timeout)
            if code is None:
                self.kill()
                return f"model-server did not exit within {timeout} s of {sig.name}; killed\n{self.describe()}"
        if code != 0:
            return f"model-server exited with {code} after {sig.name}, expected 0\n{self.describe()}"
        return None


class ServerFactory:
    """start(*args) -> ModelServer, ready; stops all servers at teardown."""

    def __init__(self, binary, root):
        self.binary = binary
        self.root = pathlib.Path(root)
        self.servers = []
        self.started = 0

    def start(self, *args, env=None, wait_ready=True, ready_timeout=READY_TIMEOUT):
        for attempt in range(3):
            self.started += 1
            server = ModelServer(self.binary, args, self.root / f"server-{self.started}", env=env)
            if not wait_ready:
                self.servers.append(server)
                return server
            if server.wait_ready(ready_timeout):
                self.servers.append(server)
                return server
            exited = server.process.poll() is not None
            if not exited:
                server.kill()
            if exited and "in use" in server.stderr().lower() and attempt < 2:
                continue  # a probed free port was taken before the server bound it: other ports
            if exited:
                pytest.fail(f"model-server exited during startup\n{server.describe()}")
            pytest.fail(f"model-server not ready (GET /v2/health/ready != 200) within {ready_timeout} s; killed\n"
                        f"{server.describe()}")
        raise AssertionError("unreachable")

    def close(self):
        errors = [error for error in (server.stop() for server in self.servers) if error]
        if errors:
            pytest.fail("\n\n".join(errors), pytrace=False)


def base_path_args(name, base_path):
    return ["--model_name", name, "--model_base_path", str(base_path)]


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def model_server_binary():
    value = os.environ.get("MODEL_SERVER")
    if not value:
        pytest.fail("MODEL_SERVER is not set: path of the release model-server binary (run scripts/test.sh)")
    path = pathlib.Path(value)
    assert path.is_file() and os.access(path, os.X_OK), f"{path} is not an executable file"
    return path


@pytest.fixture
def server_factory(model_server_binary, tmp_path):
    factory = ServerFactory(model_server_binary, tmp_path / "servers")
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def module_server_factory(model_server_binary, tmp_path_factory):
    factory = ServerFactory(model_server_binary, tmp_path_factory.mktemp("servers"))
    yield factory
    factory.close()


# --------------------------------------------------------------------------- waiting

def wait_until(predicate, timeout, message, interval=0.1):
    """Polls predicate() until it returns a truthy value (returned) or fails after timeout s."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = predicate()
        except (requests.RequestException, OSError, ValueError, KeyError) as error:
            last = error
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {message}; last: {last!r}")
        time.sleep(interval)


# --------------------------------------------------------------------------- protocol helpers

def v2_json_request(x, name="image", flat=False, request_id=None, outputs=None, parameters=None):
    tensor = {"name": name, "shape": list(x.shape), "datatype": "FP32",
              "data": x.ravel().tolist() if flat else x.tolist()}
    body = {"inputs": [tensor]}
    if request_id is not None:
        body["id"] = request_id
    if outputs is not None:
        body["outputs"] = outputs
    if parameters is not None:
        body["parameters"] = parameters
    return body


def v2_output(response_json, name):
    """The named output of a JSON V2 response as an array (data may be flat or nested)."""
    for output in response_json["outputs"]:
        if output["name"] == name:
            return np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])
    raise AssertionError(f"no output {name!r} in {[o['name'] for o in response_json['outputs']]}")


_V2_TO_NUMPY = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32, "UINT8": np.uint8,
                "INT8": np.int8, "BOOL": np.bool_}


def v2_binary_request(inputs, outputs=None, parameters=None, request_id=None):
    """Binary tensor extension request: inputs [(name, array)], outputs [{"name", "parameters"}].
    Returns (body, json_length)."""
    header = {"inputs": [], **({"id": request_id} if request_id else {})}
    chunks = []
    datatypes = {np.dtype(v): k for k, v in _V2_TO_NUMPY.items()}
    for name, array in inputs:
        raw = np.ascontiguousarray(array).tobytes()
        header["inputs"].append({"name": name, "shape": list(array.shape), "datatype": datatypes[array.dtype],
                                 "parameters": {"binary_data_size": len(raw)}})
        chunks.append(raw)
    if outputs is not None:
        header["outputs"] = outputs
    if parameters is not None:
        header["parameters"] = parameters
    head = json.dumps(header).encode()
    return head + b"".join(chunks), len(head)


def v2_parse_response(body, headers):
    """(json header, {name: array}) from a V2 response that may use the binary extension."""
    length = headers.get("Inference-Header-Content-Length")
    length = int(length) if length is not None else len(body)
    document = json.loads(body[:length])
    offset, arrays = length, {}
    for output in document["outputs"]:
        dtype = _V2_TO_NUMPY[output["datatype"]]
        size = (output.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            arrays[output["name"]] = np.frombuffer(body[offset:offset + size], dtype=dtype).reshape(output["shape"])
            offset += size
        else:
            arrays[output["name"]] = np.asarray(output["data"], dtype=dtype).reshape(output["shape"])
    assert offset == len(body), f"{len(body) - offset} unexplained bytes after the outputs"
    return document, arrays


def error_text(response):
    """The {"error": "..."} message of a failed response (asserts the JSON shape)."""
    assert response.headers.get("Content-Type", "").startswith("application/json"), \
        f"error response Content-Type {response.headers.get('Content-Type')!r}: {response.text[:300]!r}"
    document = response.json()
    assert isinstance(document, dict) and isinstance(document.get("error"), str) and document["error"], document
    return document["error"]


def assert_error(response, status, *fragments):
    assert response.status_code == status, \
        f"expected {status}, got {response.status_code}: {response.text[:500]!r}"
    message = error_text(response)
    for fragment in fragments:
        assert fragment.lower() in message.lower(), f"{fragment!r} not in error {message!r}"
    return message


def assert_still_serving(server, model="digits"):
    """After an error the server still answers: ready, and digit 7 classifies as 7."""
    assert server.process.poll() is None, f"model-server died\n{server.describe()}"
    assert server.get("/v2/health/ready").status_code == 200
    x = np.load(DIGITS_SAMPLES / "digit_7.npy").astype(np.float32)
    response = server.post(f"/v2/models/{model}/infer", json=v2_json_request(x))
    assert response.status_code == 200, response.text
    assert int(np.argmax(v2_output(response.json(), "logits"))) == 7


def tf_status(server, model, suffix=""):
    """{version: entry} of TF Serving's GET /v1/models/<m><suffix>."""
    response = server.get(f"/v1/models/{model}{suffix}")
    assert response.status_code == 200, response.text
    return {entry["version"]: entry for entry in response.json()["model_version_status"]}


def available_versions(server, model):
    return {version for version, entry in tf_status(server, model).items() if entry["state"] == "AVAILABLE"}


# --------------------------------------------------------------------------- curl

@dataclasses.dataclass
class CurlResult:
    status: int
    body: bytes
    verbose: str

    def json(self):
        return json.loads(self.body)


def curl(server, path, *args, timeout=60):
    """Real curl against the server over HTTP/1.1; returns status, body and the -v trace."""
    command = ["curl", "--silent", "--show-error", "--verbose", "--http1.1", "--noproxy", "*",
               "--max-time", str(timeout), "--output", "-", "--write-out", "\n%{http_code}", *map(str, args),
               server.url(path)]
    result = subprocess.run(command, capture_output=True, timeout=timeout + 10)
    assert result.returncode == 0, f"curl failed ({result.returncode}): {result.stderr.decode(errors='replace')}"
    body, _, status = result.stdout.rpartition(b"\n")
    return CurlResult(int(status), body, result.stderr.decode(errors="replace"))


# --------------------------------------------------------------------------- raw HTTP/1.1

@dataclasses.dataclass
class RawResponse:
    status: int
    reason: str
    headers: dict  # lower-case names
    body: bytes
    version: str


def raw_connect(server, timeout=15):
    sock = socket.create_connection((HOST, server.rest_port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def http_request_bytes(method, path, body=b"", headers=None, content_length=True):
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if content_length and body is not None and not any(k.lower() == "transfer-encoding" for k in (headers or {})):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


def chunked(body, sizes):
    """Transfer-Encoding: chunked body; the last size repeats until the body is used up."""
    out, offset, index = [], 0, 0
    while offset < len(body):
        size = sizes[min(index, len(sizes) - 1)]
        piece = body[offset:offset + size]
        out.append(b"%x\r\n" % len(piece) + piece + b"\r\n")
        offset += len(piece)
        index += 1
    out.append(b"0\r\n\r\n")
    return b"".join(out)


class RawReader:
    """Reads consecutive HTTP/1.1 responses from one socket (for pipelining)."""

    def __init__(self, sock):
        self.sock = sock
        self.file = sock.makefile("rb")

    def _line(self):
        line = self.file.readline(65537)
        if not line:
            raise EOFError("connection closed")
        return line.decode("latin-1").rstrip("\r\n")

    def read_response(self, head_only=False, skip_interim=True):
        while True:
            status_line = self._line()
            version, status, reason = (status_line.split(" ", 2) + [""])[:3]
            assert version.startswith("HTTP/1."), f"bad status line {status_line!r}"
            headers = {}
            while True:
                line = self._line()
                if not line:
                    break
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if 100 <= int(status) < 200 and skip_interim:
                continue
            break
        response = RawResponse(int(status), reason, headers, b"", version)
        if head_only or 100 <= response.status < 200 or response.status in (204, 304):
            return response
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parts = []
            while True:
                size = int(self._line().split(";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    break
                parts.append(self._read_exact(size))
                self._line()
            response.body = b"".join(parts)
        elif "content-length" in headers:
            response.body = self._read_exact(int(headers["content-length"]))
        else:
            response.body = self.file.read()
        return response

    def _read_exact(self, count):
        data = self.file.read(count)
        if len(data) != count:
            raise EOFError(f"body cut short: {len(data)} of {count} bytes")
        return data

    def closed_by_peer(self, timeout=10):
        """True if the server closes the connection (EOF or reset) within timeout."""
        self.sock.settimeout(timeout)
        try:
            return self.file.read(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False


def send_until_answered(sock, head, filler, limit, piece=16384):
    """Sends `head` then `filler` bytes in pieces (up to `limit` bytes in all) and stops
    as soon as the server answers or closes; returns whatever it answered (b"" if none)."""
    sock.sendall(head)
    sent = len(head)
    received = b""
    while sent < limit:
        sock.settimeout(0.01)
        try:
            chunk = sock.recv(65536)
            if not chunk:
                return received
            received += chunk
            break
        except socket.timeout:
            pass
        except ConnectionResetError:
            return received
        sock.settimeout(15)
        try:
            sock.sendall(filler[:piece])
        except (BrokenPipeError, ConnectionResetError):
            break
        sent += piece
    sock.settimeout(15)
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
            if b"\r\n\r\n" in received:
                head_end = received.index(b"\r\n\r\n")
                length = [line for line in received[:head_end].split(b"\r\n") if
                          line.lower().startswith(b"content-length:")]
                if not length or len(received) >= head_end + 4 + int(length[0].split(b":")[1]):
                    break
    except (ConnectionResetError, socket.timeout):
        pass
    return received
