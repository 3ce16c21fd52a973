"""model-client ($MODEL_CLIENT, release build) end to end: against the real model-server
with .npy inputs over KServe V1, Open Inference Protocol V2 REST and OIP gRPC (top-k equals
onnxruntime's, errors carry the server's message), and against recording fake servers
(HTTP/1.1, and grpcio for gRPC) for what the real one cannot show yet: the bytes of image
requests, server-side classification responses, chunked responses, dropped keep-alive
connections, GOAWAY, large messages, timeouts.

The gRPC messages come from the repository's Protos/grpc_service.proto, compiled at test time
into a private descriptor pool: tritonclient's and the KServe SDK's generated modules both
register package `inference` and cannot share this process.

Every client run and every fake-server wait is bounded."""
import base64
import concurrent.futures
import functools
import http.server
import json
import os
import pathlib
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time

import grpc
import numpy as np
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_tools import protoc
from PIL import Image

from server_fixtures import (DIGITS_SAMPLES, HOST, ROOT, base_path_args, digits_bytes, digits_reference, error_text,
                             free_port, make_model_dir)

pytestmark = pytest.mark.timeout(300)

CLIENT_TIMEOUT = 60  # s for any one model-client run
LABELS = ROOT / "models" / "digits" / "labels.txt"


@pytest.fixture(scope="session")
def model_client():
    value = os.environ.get("MODEL_CLIENT")
    if not value:
        pytest.fail("MODEL_CLIENT is not set: path of the release model-client binary (run scripts/test.sh)")
    path = pathlib.Path(value)
    assert path.is_file() and os.access(path, os.X_OK), f"{path} is not an executable file"
    return path


def run_client(binary, *args, timeout=CLIENT_TIMEOUT):
    env = {key: value for key, value in os.environ.items() if "proxy" not in key.lower()}
    return subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL)


def describe(result):
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


def parse_blocks(stdout):
    """{header or None: [(label, score)]} from `label score` lines under optional `NAME:` headers."""
    blocks, current = {}, None
    for line in stdout.splitlines():
        if line.endswith(":") and " " not in line:
            current = line[:-1]
            blocks[current] = []
            continue
        label, _, score = line.rpartition(" ")
        blocks.setdefault(current, []).append((label, float(score)))
    return blocks


def address(server, protocol):
    """The real server's HOST:PORT for `protocol`: its gRPC port for grpc, else its REST port."""
    return f"{HOST}:{server.grpc_port}" if protocol == "grpc" else server.host_port


def assert_6_digits(printed, expected):
    """`printed` is `expected` to the 6 significant digits the client prints."""
    assert printed == pytest.approx(float(expected), rel=1e-5, abs=1e-6), (printed, expected)


GRPC_SERVICE = "inference.GRPCInferenceService"


@functools.lru_cache(maxsize=None)
def oip():
    """{message name: class} for package `inference`, from Protos/grpc_service.proto compiled
    by grpc_tools' protoc into a descriptor pool of our own (not the default pool)."""
    with tempfile.TemporaryDirectory() as directory:
        descriptor_set = pathlib.Path(directory) / "oip.pb"
        status = protoc.main(["protoc", f"-I{ROOT / 'Protos'}", f"--descriptor_set_out={descriptor_set}",
                              "--include_imports", str(ROOT / "Protos" / "grpc_service.proto")])
        assert status == 0, "protoc could not compile Protos/grpc_service.proto"
        files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    names = ["ModelMetadataRequest", "ModelMetadataResponse", "ModelInferRequest", "ModelInferResponse",
             "InferParameter", "InferTensorContents"]
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"inference.{name}")) for name in names}


def grpc_call(channel, method, request, timeout=CLIENT_TIMEOUT):
    """A unary GRPCInferenceService call with grpcio; returns the response message."""
    call = channel.unary_unary(f"/{GRPC_SERVICE}/{method}", request_serializer=lambda message: message.SerializeToString(),
                               response_deserializer=oip()[f"{method}Response"].FromString)
    return call(request, timeout=timeout)


# --------------------------------------------------------------------------- real server

@pytest.fixture(scope="module")
def digits_server(module_server_factory, tmp_path_factory):
    base = make_model_dir(tmp_path_factory.mktemp("models") / "digits", {1: digits_bytes()})
    return module_server_factory.start(*base_path_args("digits", base))


@pytest.mark.parametrize("protocol", ["v1", "v2", "grpc"])
def test_top1_is_the_digit_and_top5_equals_onnxruntime(model_client, digits_server, protocol):
    for k in range(10):
        sample = DIGITS_SAMPLES / f"digit_{k}.npy"
        result = run_client(model_client, "--server", address(digits_server, protocol), "--model", "digits",
                            "--protocol", protocol, "--input", f"image={sample}", "--labels", LABELS)
        assert result.returncode == 0, describe(result)
        lines = parse_blocks(result.stdout)[None]
        assert lines[0][0] == str(k), describe(result)
        logits = digits_reference(np.load(sample).astype(np.float32))[0]
        expected = np.argsort(-logits, kind="stable")[:5]
        assert [label for label, _ in lines] == [str(i) for i in expected], describe(result)
        for (_, score), index in zip(lines, expected):
            assert_6_digits(score, logits[index])


@pytest.mark.parametrize("protocol", ["v1", "v2", "grpc"])
def test_batch_split_softmax_and_labels(model_client, digits_server, protocol, tmp_path):
    """Ten rows in one .npy, three per request on one connection: one block per row."""
    batch = tmp_path / "all.npy"
    x = np.concatenate([np.load(DIGITS_SAMPLES / f"digit_{k}.npy") for k in range(10)]).astype(np.float32)
    np.save(batch, x)
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    labels = tmp_path / "names.txt"
    labels.write_text("\n".join(names) + "\n")
    result = run_client(model_client, "--server", address(digits_server, protocol), "--model", "digits",
                        "--protocol", protocol, "--input", batch, "--batch-size", 3, "--top-k", 2, "--softmax",
                        "--labels", labels, "--verbose")
    assert result.returncode == 0, describe(result)
    blocks = parse_blocks(result.stdout)
    assert list(blocks) == [f"{batch}[{k}]" for k in range(10)], describe(result)
    logits = digits_reference(x)
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    for k in range(10):
        (label, score), (_, second) = blocks[f"{batch}[{k}]"]
        assert label == names[k]
        assert_6_digits(score, probabilities[k, k])
        assert second <= score
    if protocol == "grpc":
        assert result.stderr.count("> gRPC ModelInfer") == 4, result.stderr  # 3 + 3 + 3 + 1
        assert result.stderr.count("> gRPC ModelMetadata") == 1, result.stderr  # for the unnamed input
        assert result.stderr.count("< gRPC OK") == 5, result.stderr
    else:
        assert result.stderr.count("> POST") == 4, result.stderr  # 3 + 3 + 3 + 1
        assert result.stderr.count("< 200") == 4 + (protocol == "v2"), result.stderr  # V2: metadata for the unnamed input


@pytest.fixture(scope="module")
def classifying_server(module_server_factory, tmp_path_factory):
    """models/digits as shipped: its config.pbtxt has the server answer softmax `classes`
    and `scores` (top 3, labels.txt) and honour the V2 classification extension."""
    root = tmp_path_factory.mktemp("shipped") / "digits"
    shutil.copytree(DIGITS_SAMPLES.parent, root)
    return module_server_factory.start(*base_path_args("digits", root))


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("protocol", ["v1", "v2", "grpc"])
def test_server_classes_and_scores_are_printed(model_client, classifying_server, protocol):
    for k in range(10):
        sample = DIGITS_SAMPLES / f"digit_{k}.npy"
        result = run_client(model_client, "--server", address(classifying_server, protocol), "--model", "digits",
                            "--protocol", protocol, "--input", f"image={sample}")
        assert result.returncode == 0, describe(result)
        lines = parse_blocks(result.stdout)[None]
        probabilities = softmax(digits_reference(np.load(sample).astype(np.float32)))[0]
        expected = np.argsort(-probabilities, kind="stable")[:3]  # the server's top_k
        assert [label for label, _ in lines] == [str(i) for i in expected], describe(result)
        assert lines[0][0] == str(k)
        for (_, score), index in zip(lines, expected):
            assert score == pytest.approx(float(probabilities[index]), rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("protocol", ["v2", "grpc"])
def test_server_topk_uses_the_classification_extension(model_client, classifying_server, protocol, tmp_path):
    batch = tmp_path / "three.npy"
    x = np.concatenate([np.load(DIGITS_SAMPLES / f"digit_{k}.npy") for k in (2, 5, 8)]).astype(np.float32)
    np.save(batch, x)
    result = run_client(model_client, "--server", address(classifying_server, protocol), "--model", "digits",
                        "--protocol", protocol, "--input", batch, "--server-topk", "--top-k", 4, "--verbose")
    assert result.returncode == 0, describe(result)
    # The output to classify comes from the metadata.
    assert ("> gRPC ModelMetadata" if protocol == "grpc" else "GET /v2/models/digits") in result.stderr
    blocks = parse_blocks(result.stdout)
    probabilities = softmax(digits_reference(x))
    for row, k in enumerate((2, 5, 8)):
        lines = blocks[f"{batch}[{row}]"]
        assert len(lines) == 4 and lines[0][0] == str(k), describe(result)
        expected = np.argsort(-probabilities[row], kind="stable")[:4]
        for (label, score), index in zip(lines, expected):
            assert score == pytest.approx(float(probabilities[row, index]), rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("protocol", ["v1", "v2"])
def test_unknown_model_exits_1_with_the_servers_message(model_client, digits_server, protocol):
    path = "/v1/models/nope:predict" if protocol == "v1" else "/v2/models/nope/infer"
    response = digits_server.post(path, json={"instances": [[0]]} if protocol == "v1" else {"inputs": []})
    message = error_text(response)
    result = run_client(model_client, "--server", digits_server.host_port, "--model", "nope", "--protocol", protocol,
                        "--input", f"image={DIGITS_SAMPLES / 'digit_3.npy'}")
    assert result.returncode == 1, describe(result)
    assert f"error: {response.status_code} {message}" in result.stderr, describe(result)
    assert result.stdout == ""


def test_unknown_model_over_grpc_exits_1_with_the_servers_status_and_message(model_client, digits_server):
    request = oip()["ModelInferRequest"](model_name="nope")
    with grpc.insecure_channel(f"{HOST}:{digits_server.grpc_port}") as channel:
        with pytest.raises(grpc.RpcError) as raised:
            grpc_call(channel, "ModelInfer", request)
    code, message = raised.value.code(), raised.value.details()
    assert code == grpc.StatusCode.NOT_FOUND, (code, message)
    result = run_client(model_client, "--server", address(digits_server, "grpc"), "--model", "nope",
                        "--protocol", "grpc", "--input", f"image={DIGITS_SAMPLES / 'digit_3.npy'}")
    assert result.returncode == 1, describe(result)
    assert f"error: gRPC NOT_FOUND: {message}" in result.stderr, describe(result)
    assert result.stdout == ""


@pytest.mark.parametrize("protocol", ["v2", "grpc"])
def test_wrong_dtype_exits_1_with_the_servers_message(model_client, digits_server, protocol, tmp_path):
    sample = tmp_path / "float64.npy"
    np.save(sample, np.load(DIGITS_SAMPLES / "digit_3.npy").astype(np.float64))
    result = run_client(model_client, "--server", address(digits_server, protocol), "--model", "digits",
                        "--protocol", protocol, "--input", f"image={sample}")
    assert result.returncode == 1, describe(result)
    assert result.stderr.startswith("error: gRPC INVALID_ARGUMENT: " if protocol == "grpc" else "error: 400 "), \
        describe(result)
    assert "FP64" in result.stderr, describe(result)


@pytest.mark.parametrize("protocol", ["v2", "grpc"])
def test_refused_connection_exits_1(model_client, protocol):
    port = free_port()  # nothing listens there
    result = run_client(model_client, "--server", f"{HOST}:{port}", "--model", "digits", "--protocol", protocol,
                        "--input", f"image={DIGITS_SAMPLES / 'digit_3.npy'}")
    assert result.returncode == 1, describe(result)
    assert "refused" in result.stderr.lower(), describe(result)
    assert f"{HOST}:{port}" in result.stderr


@pytest.mark.parametrize("args", [
    [],  # no inputs
    ["--input", "x.npy", "image.jpg"],  # both kinds
    ["--input", "a=x.npy", "--input", "y.npy"],  # an unnamed input among several
    ["--input", "=x.npy"],
    ["--top-k", "0", "image.jpg"],
    ["--batch-size", "0", "image.jpg"],
    ["--timeout", "0", "image.jpg"],
    ["--protocol", "v3", "image.jpg"],
    ["--protocol", "v1", "--server-topk", "image.jpg"],
    ["--no-such-option", "image.jpg"],
], ids=lambda args: " ".join(args) or "no inputs")
def test_bad_arguments_exit_2(model_client, args):
    result = run_client(model_client, "--server", f"{HOST}:1", "--model", "digits", *args)
    assert result.returncode == 2, describe(result)
    assert result.stderr.strip(), describe(result)


@pytest.mark.parametrize("server", ["localhost", "localhost:0", "localhost:99999", "https://localhost:443", ":80"])
def test_bad_server_address_exits_2(model_client, server):
    result = run_client(model_client, "--server", server, "--model", "digits", "image.jpg")
    assert result.returncode == 2, describe(result)
    assert "--server" in result.stderr


def test_unreadable_inputs_exit_2(model_client, tmp_path):
    fortran = tmp_path / "fortran.npy"
    np.save(fortran, np.asfortranarray(np.zeros((2, 3), dtype=np.float32)))
    big_endian = tmp_path / "big.npy"
    np.save(big_endian, np.zeros(3, dtype=">f4"))
    not_npy = tmp_path / "text.npy"
    not_npy.write_text("hello")
    for args, fragment in [(["--input", f"image={tmp_path / 'missing.npy'}"], "missing.npy"),
                           (["--input", f"image={fortran}"], "Fortran"),
                           (["--input", f"image={big_endian}"], "big-endian"),
                           (["--input", f"image={not_npy}"], "not a .npy"),
                           ([tmp_path / "missing.jpg"], "missing.jpg"),
                           (["--labels", tmp_path / "missing.txt", "--input", f"image={DIGITS_SAMPLES / 'digit_1.npy'}"],
                            "missing.txt")]:
        result = run_client(model_client, "--server", f"{HOST}:1", "--model", "digits", *args)
        assert result.returncode == 2, describe(result)
        assert fragment in result.stderr, describe(result)


@pytest.mark.parametrize("protocol", ["v2", "grpc"])
def test_timeout_exits_1(model_client, protocol):
    """A server that accepts but never answers: --timeout 1 ends the run within seconds."""
    with socket.socket() as listener:
        listener.bind((HOST, 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        started = time.monotonic()
        result = run_client(model_client, "--server", f"{HOST}:{port}", "--model", "digits", "--timeout", 1,
                            "--protocol", protocol, "--input", f"image={DIGITS_SAMPLES / 'digit_3.npy'}", timeout=30)
        elapsed = time.monotonic() - started
    assert result.returncode == 1, describe(result)
    assert "timed out after 1 s" in result.stderr, describe(result)
    assert elapsed < 10, elapsed


# --------------------------------------------------------------------------- fake server

class FakeServer:
    """HTTP/1.1 server on 127.0.0.1 that records every request as a dict (method, path,
    headers with lower-case names, body, port = the client's source port) and answers with
    respond(request) -> (status, headers [(name, value)], body bytes) or, for a
    `chunked` body list, a chunked response. With close_after_response it closes every
    connection after answering without saying so (a server dropping idle keep-alives)."""

    def __init__(self, respond, close_after_response=False):
        self.requests = []
        self.lock = threading.Lock()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 15  # s a connection may sit idle before the handler thread gives up

            def handle_one(self):
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                request = {"method": self.command, "path": self.path,
                           "headers": {k.lower(): v for k, v in self.headers.items()},
                           "body": body, "port": self.client_address[1]}
                with owner.lock:
                    owner.requests.append(request)
                status, headers, payload = respond(request)
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                if isinstance(payload, list):
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for piece in payload:
                        self.wfile.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                self.wfile.flush()
                if close_after_response:
                    self.close_connection = True

            do_GET = do_POST = handle_one

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def host_port(self):
        return f"{HOST}:{self.server.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive(), "fake server thread did not stop"


def json_response(document, status=200):
    return status, [("Content-Type", "application/json")], json.dumps(document).encode()


V2_METADATA = {"name": "classifier", "versions": ["1"], "platform": "onnx_onnxv1",
               "inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": [-1]}],
               "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 4]}]}


@pytest.fixture
def jpegs(tmp_path):
    """Two small real JPEG files of different sizes."""
    paths = []
    for index, size in enumerate([(8, 8), (31, 17)]):
        path = tmp_path / f"image{index}.jpg"
        pixels = (np.arange(size[0] * size[1] * 3).reshape(size[1], size[0], 3) * (index + 3) % 256).astype(np.uint8)
        Image.fromarray(pixels).save(path, format="JPEG", quality=90)
        paths.append(path)
    return paths


def v2_binary_body(request):
    """(JSON header, binary tail) of a V2 binary-extension request."""
    length = int(request["headers"]["inference-header-content-length"])
    return json.loads(request["body"][:length]), request["body"][length:]


def test_v2_image_request_is_a_binary_bytes_tensor(model_client, jpegs):
    scores = np.array([[0.1, 0.6, 0.2, 0.1], [0.7, 0.05, 0.05, 0.2]], dtype=np.float32)

    def respond(request):
        if request["method"] == "GET":
            return json_response(V2_METADATA)
        return json_response({"model_name": "classifier", "model_version": "1", "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [2, 4], "data": scores.ravel().tolist()}]})

    with FakeServer(respond) as fake:
        result = run_client(model_client, "--server", fake.host_port, "--model", "classifier", *jpegs, "--top-k", 2)
    assert result.returncode == 0, describe(result)
    metadata, infer = fake.requests
    assert (metadata["method"], metadata["path"]) == ("GET", "/v2/models/classifier")
    assert (infer["method"], infer["path"]) == ("POST", "/v2/models/classifier/infer")
    assert infer["port"] == metadata["port"], "the two requests did not share one keep-alive connection"
    assert infer["headers"]["content-type"] == "application/octet-stream"
    assert int(infer["headers"]["content-length"]) == len(infer["body"])
    header, tail = v2_binary_body(infer)
    images = [path.read_bytes() for path in jpegs]
    expected_tail = b"".join(struct.pack("<I", len(image)) + image for image in images)
    assert header["inputs"] == [{"name": "image_bytes", "shape": [2], "datatype": "BYTES",
                                 "parameters": {"binary_data_size": len(expected_tail)}}]
    assert "outputs" not in header
    assert header["parameters"] == {"binary_data_output": True}
    assert tail == expected_tail
    assert parse_blocks(result.stdout) == {str(jpegs[0]): [("1", pytest.approx(0.6)), ("2", pytest.approx(0.2))],
                                           str(jpegs[1]): [("0", pytest.approx(0.7)), ("3", pytest.approx(0.2))]}


def test_v2_input_name_skips_metadata_and_binary_outputs_are_read(model_client, jpegs):
    values = np.array([[1.5, -2.0, 3.25, 0.0]], dtype=np.float32)

    def respond(request):
        head = json.dumps({"model_name": "classifier", "model_version": "1", "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [1, 4],
             "parameters": {"binary_data_size": values.nbytes}}]}).encode()
        return 200, [("Content-Type", "application/octet-stream"),
                     ("Inference-Header-Content-Length", str(len(head)))], head + values.tobytes()

    with FakeServer(respond) as fake:
        result = run_client(model_client, "--server", fake.host_port, "--model", "classifier", jpegs[0],
                            "--input-name", "jpeg", "--top-k", 3, "--model-version", "7")
    assert result.returncode == 0, describe(result)
    [infer] = fake.requests
    assert infer["path"] == "/v2/models/classifier/versions/7/infer"
    header, tail = v2_binary_body(infer)
    assert header["inputs"][0]["name"] == "jpeg" and header["inputs"][0]["shape"] == [1]
    assert tail == struct.pack("<I", len(jpegs[0].read_bytes())) + jpegs[0].read_bytes()
    assert result.stdout.splitlines() == ["2 3.25", "0 1.5", "3 0"]


def test_v2_server_topk_asks_for_classification_and_prints_it(model_client, jpegs, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\nfox\nowl\n")
    strings = [b"0.875:3:barn owl", b"0.0625:1", b"0.03125:2:red fox"]
    tail = b"".join(struct.pack("<I", len(s)) + s for s in strings)

    def respond(request):
        if request["method"] == "GET":
            return json_response(V2_METADATA)
        head = json.dumps({"model_name": "classifier", "model_version": "1", "outputs": [
            {"name": "probabilities", "datatype": "BYTES", "shape": [1, 3],
             "parameters": {"binary_data_size": len(tail)}}]}).encode()
        return 200, [("Content-Type", "application/octet-stream"),
                     ("Inference-Header-Content-Length", str(len(head)))], head + tail

    with FakeServer(respond) as fake:
        result = run_client(model_client, "--server", fake.host_port, "--model", "classifier", jpegs[0],
                            "--server-topk", "--top-k", 3, "--labels", labels)
    assert result.returncode == 0, describe(result)
    header, _ = v2_binary_body(fake.requests[-1])
    assert header["outputs"] == [{"name": "probabilities", "parameters": {"classification": 3}}]
    assert result.stdout.splitlines() == ["barn owl 0.875", "dog 0.0625", "red fox 0.03125"]


def test_v1_image_request_is_b64_instances_and_classes_scores_are_printed(model_client, jpegs):
    def respond(request):
        count = len(json.loads(request["body"])["instances"])
        return json_response({"predictions": [
            {"classes": ["tabby", "tiger", "lynx"], "scores": [0.25, 0.5, 0.125]}] * count})

    with FakeServer(respond) as fake:
        result = run_client(model_client, "--server", f"http://{fake.host_port}/", "--model", "inception",
                            "--protocol", "v1", *jpegs, "--top-k", 2, "--batch-size", 1)
    assert result.returncode == 0, describe(result)
    assert len(fake.requests) == 2
    assert fake.requests[0]["port"] == fake.requests[1]["port"], "the batches did not share one connection"
    for request, path in zip(fake.requests, jpegs):
        assert (request["method"], request["path"]) == ("POST", "/v1/models/inception:predict")
        assert request["headers"]["content-type"] == "application/json"
        assert json.loads(request["body"]) == {"instances": [{"b64": base64.b64encode(path.read_bytes()).decode()}]}
    assert parse_blocks(result.stdout) == {str(path): [("tiger", 0.5), ("tabby", 0.25)] for path in jpegs}


def test_v1_image_with_input_name_and_columnar_outputs(model_client, jpegs):
    def respond(request):
        return json_response({"outputs": {"classes": [[7, 1]], "scores": [[0.5, 0.75]], "other": [[1]]}})

    with FakeServer(respond) as fake:
        result = run_client(model_client, "--server", fake.host_port, "--model", "m", "--protocol", "v1",
                            jpegs[1], "--input-name", "image_bytes")
    assert result.returncode == 0, describe(result)
    body = json.loads(fake.requests[0]["body"])
    assert body == {"instances": [{"image_bytes": {"b64": base64.b64encode(jpegs[1].read_bytes()).decode()}}]}
    assert result.stdout.splitlines() == ["1 0.75", "7 0.5"]


def test_v1_npy_multiple_inputs_are_columnar(model_client, tmp_path):
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(a, np.array([[1, -2], [3, 4]], dtype=np.int64))
    np.save(b, np.array([[True, False], [False, True]]))

    def respond(request):
        return json_response({"predictions": [[0.5, 1e-7], [2, 1]]})

    with FakeServer(respond) as fake:
        result = run_client(model_client, "--server", fake.host_port, "--model", "m", "--protocol", "v1",
                            "--input", f"a={a}", "--input", f"b={b}", "--top-k", 1)
    assert result.returncode == 0, describe(result)
    assert json.loads(fake.requests[0]["body"]) == {"inputs": {"a": [[1, -2], [3, 4]], "b": [[True, False], [False, True]]}}
    assert parse_blocks(result.stdout) == {f"{a}[0]": [("0", 0.5)], f"{a}[1]": [("0", 2.0)]}


def test_large_request_and_response(model_client, tmp_path):
    """An 8 MB image and a 1.2 MB binary [300, 1000] output: partial sends and receives."""
    image = tmp_path / "large.jpg"
    image.write_bytes(np.random.default_rng(1).integers(0, 256, 8 << 20, dtype=np.uint8).tobytes())
    scores = np.random.default_rng(2).standard_normal((300, 1000)).astype(np.float32)

    def respond(request):
        head = json.dumps({"model_name": "m", "model_version": "1", "outputs": [
            {"name": "scores", "datatype": "FP32", "shape": list(scores.shape),
             "parameters": {"binary_data_size": scores.nbytes}}]}).encode()
        return 200, [("Inference-Header-Content-Length", str(len(head)))], head + scores.tobytes()

    with FakeServer(respond) as fake:
        result = run_client(model_client, "--server", fake.host_port, "--model", "m", image, "--input-name", "x",
                            "--top-k", 3)
    assert result.returncode == 0, describe(result)
    _, tail = v2_binary_body(fake.requests[0])
    assert tail == struct.pack("<I", 8 << 20) + image.read_bytes()
    blocks = parse_blocks(result.stdout)
    assert list(blocks) == [f"{image}[{row}]" for row in range(300)]  # more rows than images: numbered
    for row in (0, 299):
        expected = np.argsort(-scores[row], kind="stable")[:3]
        assert [label for label, _ in blocks[f"{image}[{row}]"]] == [str(i) for i in expected]


def test_chunked_response_and_dropped_keep_alive_connection(model_client, jpegs):
    """Responses come chunked and the server closes every connection after answering
    without saying so: the client reconnects for the next batch."""
    def respond(request):
        body = json.dumps({"predictions": [[0.25, 0.75]]}).encode()
        return 200, [("Content-Type", "application/json")], [body[:5], body[5:6], body[6:]]

    with FakeServer(respond, close_after_response=True) as fake:
        result = run_client(model_client, "--server", fake.host_port, "--model", "m", "--protocol", "v1",
                            *jpegs, "--batch-size", 1, "--top-k", 1)
    assert result.returncode == 0, describe(result)
    assert len(fake.requests) == 2
    assert fake.requests[0]["port"] != fake.requests[1]["port"]
    assert parse_blocks(result.stdout) == {str(path): [("1", 0.75)] for path in jpegs}


@pytest.mark.parametrize("status, headers, body, expected", [
    (400, [("Content-Type", "application/json")], b'{"error": "input \\"x\\" is wrong"}', 'error: 400 input "x" is wrong'),
    (503, [("Content-Type", "text/plain")], b"overloaded\n", "error: 503 overloaded"),
    (500, [], b"", "error: 500 Internal Server Error"),
])
def test_server_error_statuses_exit_1(model_client, jpegs, status, headers, body, expected):
    with FakeServer(lambda request: (status, headers, body)) as fake:
        result = run_client(model_client, "--server", fake.host_port, "--model", "m", "--protocol", "v1", jpegs[0])
    assert result.returncode == 1, describe(result)
    assert result.stderr.strip() == expected, describe(result)


def test_unparseable_response_exits_1(model_client, jpegs):
    with FakeServer(lambda request: (200, [("Content-Type", "application/json")], b"{not json")) as fake:
        result = run_client(model_client, "--server", fake.host_port, "--model", "m", "--protocol", "v1", jpegs[0])
    assert result.returncode == 1, describe(result)
    assert "not valid JSON" in result.stderr, describe(result)


# --------------------------------------------------------------------------- fake gRPC server

class FakeGRPCServer:
    """grpcio server on 127.0.0.1 serving GRPCInferenceService's ModelMetadata and ModelInfer:
    respond(method, request) returns the response message or a (grpc.StatusCode, details) pair
    to fail the call with. Records every call as a dict (method, request, peer = the client's
    address, deadline = seconds left when it arrived, metadata). No message size limits."""

    def __init__(self, respond, options=()):
        self.calls = []
        self.lock = threading.Lock()
        messages = oip()

        def handler(method):
            def handle(request, context):
                with self.lock:
                    self.calls.append({"method": method, "request": request, "peer": context.peer(),
                                       "deadline": context.time_remaining(), "metadata": dict(context.invocation_metadata())})
                answer = respond(method, request)
                if isinstance(answer, tuple):
                    context.abort(*answer)
                return answer
            return grpc.unary_unary_rpc_method_handler(handle, request_deserializer=messages[f"{method}Request"].FromString,
                                                       response_serializer=lambda message: message.SerializeToString())

        self.server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=4),
                                  options=[("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1),
                                           *options])
        self.server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
            GRPC_SERVICE, {method: handler(method) for method in ("ModelMetadata", "ModelInfer")})])
        self.port = self.server.add_insecure_port(f"{HOST}:0")

    @property
    def host_port(self):
        return f"{HOST}:{self.port}"

    def __enter__(self):
        self.server.start()
        return self

    def __exit__(self, *exc):
        assert self.server.stop(grace=None).wait(10), "fake gRPC server did not stop"


def grpc_metadata(inputs=(("image_bytes", "BYTES", [-1]),), outputs=(("probabilities", "FP32", [-1, 4]),)):
    tensor = oip()["ModelMetadataResponse"].TensorMetadata
    return oip()["ModelMetadataResponse"](
        name="classifier", versions=["1"], platform="onnx_onnxv1",
        inputs=[tensor(name=n, datatype=d, shape=s) for n, d, s in inputs],
        outputs=[tensor(name=n, datatype=d, shape=s) for n, d, s in outputs])


def grpc_infer_response(*outputs, raw=True):
    """ModelInferResponse with `outputs` (name, datatype, numpy array or list of bytes strings),
    as raw_output_contents or (raw=False) typed contents."""
    response = oip()["ModelInferResponse"](model_name="classifier", model_version="1")
    for name, datatype, value in outputs:
        tensor = response.outputs.add(name=name, datatype=datatype)
        if datatype == "BYTES":
            strings, shape = value
            tensor.shape.extend(shape)
            if raw:
                response.raw_output_contents.append(b"".join(struct.pack("<I", len(s)) + s for s in strings))
            else:
                tensor.contents.bytes_contents.extend(strings)
        else:
            tensor.shape.extend(value.shape)
            if raw:
                response.raw_output_contents.append(value.astype(value.dtype.newbyteorder("<")).tobytes())
            else:
                {"FP32": tensor.contents.fp32_contents, "FP64": tensor.contents.fp64_contents,
                 "INT64": tensor.contents.int64_contents, "INT32": tensor.contents.int_contents}[datatype].extend(
                    value.ravel().tolist())
    return response


def test_grpc_image_request_is_one_raw_bytes_tensor(model_client, jpegs):
    scores = np.array([[0.1, 0.6, 0.2, 0.1], [0.7, 0.05, 0.05, 0.2]], dtype=np.float32)

    def respond(method, request):
        if method == "ModelMetadata":
            return grpc_metadata()
        return grpc_infer_response(("probabilities", "FP32", scores))

    with FakeGRPCServer(respond) as fake:
        result = run_client(model_client, "--server", fake.host_port, "--model", "classifier", "--protocol", "grpc",
                            *jpegs, "--top-k", 2, "--timeout", 20)
    assert result.returncode == 0, describe(result)
    metadata, infer = fake.calls
    assert metadata["method"] == "ModelMetadata"
    assert (metadata["request"].name, metadata["request"].version) == ("classifier", "")
    assert infer["method"] == "ModelInfer"
    assert infer["peer"] == metadata["peer"], "the two calls did not share one HTTP/2 connection"
    assert 0 < infer["deadline"] <= 20, infer["deadline"]  # grpc-timeout: the --timeout left
    request = infer["request"]
    assert (request.model_name, request.model_version) == ("classifier", "")
    assert [(i.name, i.datatype, list(i.shape), i.HasField("contents")) for i in request.inputs] == \
        [("image_bytes", "BYTES", [2], False)]
    images = [path.read_bytes() for path in jpegs]
    assert list(request.raw_input_contents) == [b"".join(struct.pack("<I", len(image)) + image for image in images)]
    assert list(request.outputs) == [] and dict(request.parameters) == {}
    assert parse_blocks(result.stdout) == {str(jpegs[0]): [("1", pytest.approx(0.6)), ("2", pytest.approx(0.2))],
                                           str(jpegs[1]): [("0", pytest.approx(0.7)), ("3", pytest.approx(0.2))]}


def test_grpc_input_name_skips_metadata_and_typed_contents_are_read(model_client, jpegs):
    values = np.array([[1.5, -2.0, 3.25, 0.0]], dtype=np.float32)

    def respond(method, request):
        return grpc_infer_response(("probabilities", "FP32", values), raw=False)

    with FakeGRPCServer(respond) as fake:
        result = run_client(model_client, "--server", fake.host_port, "--model", "classifier", "--protocol", "grpc",
                            jpegs[0], "--input-name", "jpeg", "--top-k", 3, "--model-version", "7")
    assert result.returncode == 0, describe(result)
    [infer] = fake.calls
    request = infer["request"]
    assert (request.model_name, request.model_version) == ("classifier", "7")
    assert (request.inputs[0].name, list(request.inputs[0].shape)) == ("jpeg", [1])
    assert list(request.raw_input_contents) == [struct.pack("<I", len(jpegs[0].read_bytes())) + jpegs[0].read_bytes()]
    assert result.stdout.splitlines() == ["2 3.25", "0 1.5", "3 0"]


@pytest.mark.parametrize("raw", [True, False], ids=["raw", "typed"])
def test_grpc_server_topk_asks_for_classification_and_prints_it(model_client, jpegs, tmp_path, raw):
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\nfox\nowl\n")
    strings = [b"0.875:3:barn owl", b"0.0625:1", b"0.03125:2:red fox"]

    def respond(method, request):
        if method == "ModelMetadata":
            return grpc_metadata()
        return grpc_infer_response(("probabilities", "BYTES", (strings, [1, 3])), raw=raw)

    with FakeGRPCServer(respond) as fake:
        result = run_client(model_client, "--server", fake.host_port, "--model", "classifier", "--protocol", "grpc",
                            jpegs[0], "--server-topk", "--top-k", 3, "--labels", labels)
    assert result.returncode == 0, describe(result)
    request = fake.calls[-1]["request"]
    [output] = request.outputs
    assert output.name == "probabilities"
    assert list(output.parameters) == ["classification"]
    assert output.parameters["classification"].WhichOneof("parameter_choice") == "int64_param"
    assert output.parameters["classification"].int64_param == 3
    assert result.stdout.splitlines() == ["barn owl 0.875", "dog 0.0625", "red fox 0.03125"]


def test_grpc_classes_and_scores_outputs_are_printed_as_ranked(model_client, jpegs):
    def respond(method, request):
        return grpc_infer_response(("classes", "BYTES", ([b"tabby", b"tiger", b"lynx"] * 2, [2, 3])),
                                   ("scores", "FP32", np.array([[0.25, 0.5, 0.125], [0.5, 0.25, 0.125]], np.float32)))

    with FakeGRPCServer(respond) as fake:
        result = run_client(model_client, "--server", fake.host_port, "--model", "inception", "--protocol", "grpc",
                            *jpegs, "--input-name", "images", "--top-k", 2)
    assert result.returncode == 0, describe(result)
    assert parse_blocks(result.stdout) == {str(jpegs[0]): [("tiger", 0.5), ("tabby", 0.25)],
                                           str(jpegs[1]): [("tabby", 0.5), ("tiger", 0.25)]}


def test_grpc_npy_inputs_are_raw_little_endian_with_their_dtypes(model_client, tmp_path):
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    x = np.array([[1, -2], [3, 4]], dtype=np.int64)
    y = np.array([[True, False], [False, True]])
    np.save(a, x)
    np.save(b, y)

    def respond(method, request):
        return grpc_infer_response(("out", "FP64", np.array([[0.5, 1e-7], [2, 1]])))

    with FakeGRPCServer(respond) as fake:
        result = run_client(model_client, "--server", fake.host_port, "--model", "m", "--protocol", "grpc",
                            "--input", f"a={a}", "--input", f"b={b}", "--top-k", 1)
    assert result.returncode == 0, describe(result)
    [infer] = fake.calls  # every input is named: no metadata call
    request = infer["request"]
    assert [(i.name, i.datatype, list(i.shape)) for i in request.inputs] == [("a", "INT64", [2, 2]), ("b", "BOOL", [2, 2])]
    assert list(request.raw_input_contents) == [x.astype("<i8").tobytes(), y.astype(np.uint8).tobytes()]
    assert parse_blocks(result.stdout) == {f"{a}[0]": [("0", 0.5)], f"{a}[1]": [("0", 2.0)]}


def test_grpc_large_request_and_response(model_client, tmp_path):
    """A 48 MiB image and a 40 MB raw FP32 [400, 25000] output: flow control both ways."""
    image = tmp_path / "large.jpg"
    image.write_bytes(np.random.default_rng(1).integers(0, 256, 48 << 20, dtype=np.uint8).tobytes())
    scores = np.random.default_rng(2).standard_normal((400, 25000)).astype(np.float32)

    def respond(method, request):
        return grpc_infer_response(("scores", "FP32", scores))

    with FakeGRPCServer(respond) as fake:
        result = run_client(model_client, "--server", fake.host_port, "--model", "m", "--protocol", "grpc", image,
                            "--input-name", "x", "--top-k", 3)
    assert result.returncode == 0, describe(result)
    assert list(fake.calls[0]["request"].raw_input_contents) == [struct.pack("<I", 48 << 20) + image.read_bytes()]
    blocks = parse_blocks(result.stdout)
    assert list(blocks) == [f"{image}[{row}]" for row in range(400)]  # more rows than images: numbered
    for row in (0, 399):
        expected = np.argsort(-scores[row], kind="stable")[:3]
        assert [label for label, _ in blocks[f"{image}[{row}]"]] == [str(i) for i in expected]


def test_grpc_goaway_between_calls_reconnects(model_client, jpegs):
    """The server ends each connection soon after it opened (GOAWAY after max_connection_age):
    later batches go out on new connections."""
    def respond(method, request):
        time.sleep(0.3)
        return grpc_infer_response(("p", "FP32", np.array([[0.25, 0.75]], np.float32)))

    options = [("grpc.max_connection_age_ms", 100), ("grpc.max_connection_age_grace_ms", 5000)]
    with FakeGRPCServer(respond, options) as fake:
        result = run_client(model_client, "--server", fake.host_port, "--model", "m", "--protocol", "grpc",
                            *jpegs, jpegs[0], "--input-name", "x", "--batch-size", 1, "--top-k", 1)
    assert result.returncode == 0, describe(result)
    assert len(fake.calls) == 3
    assert len({call["peer"] for call in fake.calls}) > 1, fake.calls
    assert parse_blocks(result.stdout) == {str(path): [("1", 0.75)] for path in jpegs}


@pytest.mark.parametrize("code, details", [
    (grpc.StatusCode.NOT_FOUND, "model 'nope' is not found"),
    (grpc.StatusCode.INVALID_ARGUMENT, "input 'x': expected FP32, got FP64 (100% sure) \u2013 d\u00e9j\u00e0 vu"),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, ""),
])
def test_grpc_error_statuses_exit_1_with_the_servers_message(model_client, jpegs, code, details):
    with FakeGRPCServer(lambda method, request: (code, details)) as fake:
        result = run_client(model_client, "--server", fake.host_port, "--model", "m", "--protocol", "grpc", jpegs[0],
                            "--input-name", "x")
    assert result.returncode == 1, describe(result)
    expected = f"error: gRPC {code.name}" + (f": {details}" if details else "")
    assert result.stderr.strip() == expected, describe(result)
    assert result.stdout == ""


def test_grpc_to_an_http1_server_exits_1_and_says_so(model_client, jpegs):
    """Python's HTTP/1.1 server answers the HTTP/2 preface with a bare HTML page; a typical
    other one with an HTTP/1.1 status line."""
    with FakeServer(lambda request: json_response({})) as fake:
        result = run_client(model_client, "--server", fake.host_port, "--model", "m", "--protocol", "grpc", jpegs[0],
                            "--input-name", "x", "--timeout", 10)
    assert result.returncode == 1, describe(result)
    assert f"{fake.host_port} does not speak HTTP/2" in result.stderr, describe(result)
    assert "gRPC port" in result.stderr, describe(result)

    with socket.socket() as listener:
        listener.bind((HOST, 0))
        listener.listen(1)
        port = listener.getsockname()[1]

        def answer():
            listener.settimeout(20)
            connection, _ = listener.accept()
            with connection:
                connection.settimeout(10)
                connection.recv(65536)
                connection.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                connection.shutdown(socket.SHUT_WR)
                while connection.recv(65536):  # until the client closes: no reset loses the answer
                    pass

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        result = run_client(model_client, "--server", f"{HOST}:{port}", "--model", "m", "--protocol", "grpc", jpegs[0],
                            "--input-name", "x", "--timeout", 10)
        thread.join(timeout=20)
    assert result.returncode == 1, describe(result)
    assert "does not speak HTTP/2 (it answered 'HTTP/1.1 400 Bad Request')" in result.stderr, describe(result)
