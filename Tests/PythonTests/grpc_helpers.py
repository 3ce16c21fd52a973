"""Helpers for the gRPC end-to-end tests (test_server_grpc*.py), importable from every test
venv (only grpcio, numpy and the standard library): channels with the clients' message
limits, status assertions, gRPC framing, /metrics readings, the slow-model calibration, and
the nghttp2 command-line tools (nghttp for single requests whose headers and trailers are
read as sent, h2load for load).

Addresses: the gRPC port is `server.grpc_port` (--port); the REST port `server.rest_port`
(--rest_api_port) also speaks gRPC over HTTP/2 with prior knowledge (h2c)."""
import dataclasses
import math
import re
import shutil
import subprocess
import tempfile
import time

import grpc
import numpy as np
import pytest

from server_fixtures import HOST

MiB = 1 << 20
MAX_MESSAGE = 64 * MiB  # the server's default limit for one gRPC message
RPC_TIMEOUT = 60.0  # s for any single gRPC call that should succeed
UNLIMITED = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]

# grpc.health.v1.HealthCheckResponse.ServingStatus
SERVING = 1

HEALTH_CHECK = "/grpc.health.v1.Health/Check"


def grpc_address(server):
    return f"{HOST}:{server.grpc_port}"


def rest_address(server):
    """The REST port: gRPC clients reach it with HTTP/2 prior knowledge."""
    return f"{HOST}:{server.rest_port}"


@pytest.fixture(params=["grpc-port", "rest-port-h2c"])
def address(request, server):
    """Both places gRPC is served: --port, and the REST port with HTTP/2 prior knowledge.
    A test module imports this fixture; `server` is the module's own."""
    return grpc_address(server) if request.param == "grpc-port" else rest_address(server)


def channel(address, options=()):
    """An insecure channel without message size limits on the client side (like
    tritonclient.grpc's and KServe's), connected within 10 s."""
    result = grpc.insecure_channel(address, options=[*UNLIMITED, *options])
    try:
        grpc.channel_ready_future(result).result(timeout=10)
    except grpc.FutureTimeoutError:
        result.close()
        pytest.fail(f"no gRPC connection to {address} within 10 s")
    return result


def expect_status(code, call, *args, fragments=(), **kwargs):
    """Runs call(*args, **kwargs), which must fail with gRPC status `code` and a non-empty
    message containing every fragment (case-insensitive). Returns the message."""
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kwargs)
    error = info.value
    assert error.code() == code, f"expected {code}, got {error.code()}: {error.details()!r}"
    details = error.details() or ""
    assert details.strip(), f"{code} without a message"
    for fragment in fragments:
        assert fragment.lower() in details.lower(), f"{fragment!r} not in {details!r}"
    return details


def raw_method(chan, path):
    """A unary method of `chan` that sends and returns bytes (no protobuf classes)."""
    return chan.unary_unary(path, request_serializer=None, response_deserializer=None)


# --------------------------------------------------------------------------- wire helpers

def frame(payload, compressed=False):
    """A gRPC length-prefixed message: flag byte, 4-byte big-endian length, payload."""
    return bytes([1 if compressed else 0]) + len(payload).to_bytes(4, "big") + payload


def varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def health_request(service):
    """grpc.health.v1.HealthCheckRequest{service = 1}: empty message for ""."""
    data = service.encode()
    return b"\x0a" + varint(len(data)) + data if data else b""


def health_status(response):
    """HealthCheckResponse.status (field 1, varint); 0 when absent."""
    status, offset = 0, 0
    while offset < len(response):
        key = response[offset]
        offset += 1
        assert key & 7 == 0, f"unexpected wire type in {response!r}"
        value, shift = 0, 0
        while True:
            byte = response[offset]
            offset += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if key >> 3 == 1:
            status = value
    return status


# --------------------------------------------------------------------------- /metrics

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def metric_samples(server, name):
    """[(labels, value)] of metric `name` in the server's /metrics."""
    response = server.get("/metrics")
    assert response.status_code == 200, response.text
    samples = []
    for line in response.text.splitlines():
        match = _SAMPLE.match(line)
        if match and match.group(1) == name:
            samples.append((dict(_LABEL.findall(match.group(2) or "")), float(match.group(3))))
    return samples


def metric_sum(server, name, **labels):
    """Sum of the samples of `name` whose labels include `labels`."""
    return sum(value for sample_labels, value in metric_samples(server, name)
               if all(sample_labels.get(key) == want for key, want in labels.items()))


def batch_sizes(server, model):
    """{batch size: count} of the executed batches of `model`."""
    return {int(labels["size"]): int(value) for labels, value in metric_samples(server, "model_server_batch_size_total")
            if labels.get("model") == model}


def successes(server, model):
    """Successful inference requests of `model`, all protocols."""
    return metric_sum(server, "model_server_requests_total", model=model, outcome="success")


def in_flight(server):
    return metric_sum(server, "model_server_requests_in_flight")


# --------------------------------------------------------------------------- slow model

def calibrate_slow(infer_seconds, target=1.0, start=32, limit=4096):
    """The batch size at which the slow model (server_fixtures.slow_bytes) takes at least
    `target` s: infer_seconds(rows) runs one request and returns its duration."""
    rows = start
    while True:
        seconds = infer_seconds(rows)
        # A second reading must agree: one slow reading on a noisy machine would pick too few rows.
        if seconds >= target and (seconds := min(seconds, infer_seconds(rows))) >= target:
            return rows, seconds
        if rows >= limit:
            pytest.fail(f"the slow model takes only {seconds:.3f} s for {rows} rows: make it slower")
        rows = min(limit, max(rows * 2, int(math.ceil(rows * 1.3 * target / max(seconds, 1e-3)))))


# --------------------------------------------------------------------------- nghttp2 tools

def tool(name):
    path = shutil.which(name)
    if not path:
        pytest.fail(f"{name} is not installed (Debian package nghttp2-client; scripts/install-deps.sh)")
    return path


@dataclasses.dataclass
class H2Response:
    fields: dict  # response header and trailer fields, in order of arrival (later wins)
    reset: str  # RST_STREAM error code name sent by the server ("" if none)
    trace: str = dataclasses.field(repr=False)  # nghttp's whole -v trace
    seconds: float

    @property
    def output(self):
        """The received header fields, resets and GOAWAYs of the trace (for failure messages)."""
        keep = ("recv (stream_id=", "RST_STREAM", "GOAWAY", "error_code", "Connected", "Some requests")
        lines = [line for line in self.trace.splitlines() if any(word in line for word in keep)]
        return "\n".join(lines[-40:]) or self.trace[-3000:]

    @property
    def grpc_status(self):
        value = self.fields.get("grpc-status")
        return None if value is None else int(value)


def nghttp(address, path, body, headers, timeout=30):
    """One HTTP/2 request with prior knowledge (h2c) by nghttp: POST `body` (bytes) to
    `path` with `headers` {name: value}. Nothing on the client side enforces gRPC deadlines,
    so what comes back is what the server decided."""
    with tempfile.NamedTemporaryFile(prefix="nghttp-body-") as data:
        data.write(body)
        data.flush()
        command = [tool("nghttp"), "-v", "-n", f"--timeout={timeout}", f"--data={data.name}"]
        for name, value in headers.items():
            command += ["-H", f"{name}: {value}"]
        command.append(f"http://{address}{path}")
        started = time.monotonic()
        result = subprocess.run(command, capture_output=True, timeout=timeout + 15)
        seconds = time.monotonic() - started
    output = result.stdout.decode("utf-8", errors="replace") + result.stderr.decode("utf-8", errors="replace")
    fields, reset, pending_reset = {}, "", False
    for line in output.splitlines():
        match = re.match(r"^\[\s*[\d.]+\] recv \(stream_id=(\d+)\) (:?[^:\s]+): (.*)$", line)
        if match and match.group(1) != "0":
            fields[match.group(2)] = match.group(3)
            continue
        if re.match(r"^\[\s*[\d.]+\] recv RST_STREAM frame", line):
            pending_reset = True
            continue
        if pending_reset:
            code = re.search(r"error_code=(\w+)", line)
            if code:
                reset, pending_reset = code.group(1), False
    return H2Response(fields, reset, output, seconds)


def h2load(address, path, body_file, requests=200, clients=4, streams=8, timeout=120):
    """h2load -n requests -c clients -m streams with a gRPC body; returns {word: count} of its
    "requests:" line (total, started, done, succeeded, failed, errored, timeout) and the output."""
    command = [tool("h2load"), "-n", str(requests), "-c", str(clients), "-m", str(streams), "-d", str(body_file),
               "-H", "content-type: application/grpc", "-H", "te: trailers", f"http://{address}{path}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    output = result.stdout + result.stderr
    line = next((line for line in output.splitlines() if line.startswith("requests:")), None)
    assert result.returncode == 0 and line, f"h2load failed ({result.returncode}):\n{output}"
    counts = {word: int(number) for number, word in re.findall(r"(\d+) (\w+)", line)}
    return counts, output


def wait_for(predicate, timeout, message, interval=0.05):
    """Polls predicate() until truthy (returned) or fails after timeout s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


def assert_equal_arrays(actual, expected):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype, f"dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    np.testing.assert_array_equal(actual, expected)
