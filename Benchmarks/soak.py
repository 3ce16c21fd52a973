#!/usr/bin/env python3
"""Soak: a long mixed load against a release model-server, with hot reloads, counting every
answer that is not the one expected and watching the server's resident memory.

    $VENV_TEST/bin/python Benchmarks/soak.py --server .build/release/model-server \
        --requests 1000000 [--workers 4] [--reload-seconds 30]

The repository (a temporary directory) holds models/trivial, models/digits (JPEG input,
labels, top-k) and `reloaded`, a copy of trivial that gets a new version every
--reload-seconds while the oldest one is removed (the server, polling every second, loads the
new version before it unloads the old one, so `reloaded` must answer throughout).

Each worker process sends, in a fixed weighted rotation: REST V1 :predict, V2 JSON, V2 binary
extension, gRPC V2 ModelInfer (trivial), V1 {"b64"} and V2 BYTES JPEG (digits), requests to
`reloaded`, and bad ones (malformed JSON -> 400, wrong shape -> 400, unknown model -> 404,
gRPC wrong shape -> INVALID_ARGUMENT), and disconnects (a request cut in its body, and a
request whose answer is never read). Every answer's status is checked, and one in 50 bodies
is checked for the right numbers.

Prints one JSON object: requests per kind, unexpected answers (with the first few samples),
requests per second, and the server's RSS after warm-up, at its peak and after the run.
Exit status 1 if any answer was unexpected, the server died, or the RSS after the run is more
than --rss-tolerance (default 10%) above the RSS after warm-up.
"""
import argparse
import base64
import json
import multiprocessing
import os
import pathlib
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
X = [0.0, 1.0, 2.0, 3.0]
Y = [1.0, 3.0, 5.0, 7.0]

# (kind, weight): the rotation each worker follows.
MIX = [
    ("v1_predict", 22), ("v2_json", 18), ("v2_binary", 10), ("grpc_v2", 14),
    ("jpeg_v1_b64", 5), ("jpeg_v2_bytes", 5), ("reloaded_v2", 10),
    ("bad_json", 4), ("bad_shape", 3), ("unknown_model", 3), ("grpc_bad_shape", 2),
    ("cut_body", 2), ("unread_answer", 2),
]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HTTPClient:
    """Keep-alive HTTP/1.1 client on one socket; reconnects after the server closes."""

    def __init__(self, port):
        self.port = port
        self.sock = None
        self.buffer = b""

    def connect(self):
        self.sock = socket.create_connection(("127.0.0.1", self.port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def close(self):
        if self.sock:
            self.sock.close()
        self.sock = None

    def request(self, path, body, headers=b""):
        """POST; returns (status, body). Retries once on a connection the server had closed."""
        message = (b"POST " + path + b" HTTP/1.1\r\nHost: soak\r\nContent-Type: application/json\r\n"
                   + headers + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        for attempt in range(2):
            if self.sock is None:
                self.connect()
            try:
                self.sock.sendall(message)
                return self.read_answer()
            except (ConnectionError, EOFError):
                self.close()
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def read_answer(self):
        while b"\r\n\r\n" not in self.buffer:
            self.fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = 0
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        while len(self.buffer) < length:
            self.fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        if close:
            self.close()
        return status, body

    def fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError
        self.buffer += chunk


def jpeg_bytes():
    return (ROOT / "models/digits/samples/digit_3.jpg").read_bytes()


def grpc_stub(port):
    import grpc
    from tritonclient.grpc import service_pb2
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                               request_serializer=service_pb2.ModelInferRequest.SerializeToString,
                               response_deserializer=service_pb2.ModelInferResponse.FromString)

    def infer(shape, values):
        request = service_pb2.ModelInferRequest(model_name="trivial")
        tensor = request.inputs.add()
        tensor.name, tensor.datatype = "x", "FP32"
        tensor.shape.extend(shape)
        request.raw_input_contents.append(struct.pack(f"<{len(values)}f", *values))
        try:
            response = call(request, timeout=30)
            return "OK", response
        except grpc.RpcError as error:
            return error.code().name, None

    return infer


def worker(index, rest_port, grpc_port, count, results):
    """Sends `count` requests; puts (counts, unexpected samples, unexpected total) on `results`."""
    http = HTTPClient(rest_port)
    infer = grpc_stub(grpc_port)
    jpeg = jpeg_bytes()
    jpeg_b64 = base64.b64encode(jpeg)
    rotation = [kind for kind, weight in MIX for _ in range(weight)]
    counts = {}
    unexpected = 0
    samples = []
    v1 = json.dumps({"instances": [X]}).encode()
    v2 = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": X}]}).encode()
    v2_bin_header = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                                            "parameters": {"binary_data_size": 16}}]}).encode()
    v2_bin = v2_bin_header + struct.pack("<4f", *X)
    jpeg_v1 = b'{"instances": [{"b64": "' + jpeg_b64 + b'"}]}'
    payload = len(jpeg).to_bytes(4, "little") + jpeg
    jpeg_v2_header = json.dumps({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                                             "parameters": {"binary_data_size": len(payload)}}]}).encode()
    jpeg_v2 = jpeg_v2_header + payload
    bad_shape = json.dumps({"inputs": [{"name": "x", "shape": [1, 5], "datatype": "FP32", "data": X + [4.0]}]}).encode()

    def check(kind, ok, detail):
        nonlocal unexpected
        counts[kind] = counts.get(kind, 0) + 1
        if not ok:
            unexpected += 1
            if len(samples) < 5:
                samples.append(f"{kind}: {detail}"[:300])

    for n in range(count):
        kind = rotation[(n * 7 + index) % len(rotation)]
        verify = n % 50 == 0
        try:
            if kind == "v1_predict":
                status, body = http.request(b"/v1/models/trivial:predict", v1)
                check(kind, status == 200 and (not verify or json.loads(body)["predictions"] == [Y]), (status, body[:200]))
            elif kind == "v2_json":
                status, body = http.request(b"/v2/models/trivial/infer", v2)
                check(kind, status == 200 and (not verify or json.loads(body)["outputs"][0]["data"] == Y), (status, body[:200]))
            elif kind == "v2_binary":
                status, body = http.request(b"/v2/models/trivial/infer", v2_bin,
                                            b"Inference-Header-Content-Length: " + str(len(v2_bin_header)).encode() + b"\r\n")
                check(kind, status == 200 and (not verify or json.loads(body)["outputs"][0]["data"] == Y), (status, body[:200]))
            elif kind == "grpc_v2":
                code, response = infer([1, 4], X)
                ok = code == "OK" and (not verify or list(struct.unpack("<4f", response.raw_output_contents[0])) == Y)
                check(kind, ok, code)
            elif kind == "grpc_bad_shape":
                code, _ = infer([1, 5], X + [4.0])
                check(kind, code == "INVALID_ARGUMENT", code)
            elif kind == "jpeg_v1_b64":
                status, body = http.request(b"/v1/models/digits:predict", jpeg_v1)
                check(kind, status == 200 and (not verify or json.loads(body)["predictions"][0]["classes"][0] == "3"), (status, body[:200]))
            elif kind == "jpeg_v2_bytes":
                status, body = http.request(b"/v2/models/digits/infer", jpeg_v2,
                                            b"Inference-Header-Content-Length: " + str(len(jpeg_v2_header)).encode() + b"\r\n")
                check(kind, status == 200, (status, body[:200]))
            elif kind == "reloaded_v2":
                status, body = http.request(b"/v2/models/reloaded/infer", v2)
                check(kind, status == 200 and (not verify or json.loads(body)["outputs"][0]["data"] == Y), (status, body[:200]))
            elif kind == "bad_json":
                status, body = http.request(b"/v2/models/trivial/infer", b'{"inputs": [{"name": "x", ')
                check(kind, status == 400, (status, body[:200]))
            elif kind == "bad_shape":
                status, body = http.request(b"/v2/models/trivial/infer", bad_shape)
                check(kind, status == 400, (status, body[:200]))
            elif kind == "unknown_model":
                status, body = http.request(b"/v2/models/no-such-model/infer", v2)
                check(kind, status == 404, (status, body[:200]))
            elif kind == "cut_body":
                with socket.create_connection(("127.0.0.1", rest_port)) as s:
                    s.sendall(b"POST /v2/models/trivial/infer HTTP/1.1\r\nHost: soak\r\nContent-Length: "
                              + str(len(v2)).encode() + b"\r\n\r\n" + v2[: len(v2) // 2])
                check(kind, True, "")
            elif kind == "unread_answer":
                with socket.create_connection(("127.0.0.1", rest_port)) as s:
                    s.sendall(b"POST /v2/models/trivial/infer HTTP/1.1\r\nHost: soak\r\nContent-Length: "
                              + str(len(v2)).encode() + b"\r\n\r\n" + v2)
                check(kind, True, "")
        except Exception as error:  # a connection reset or a timeout is an unexpected answer
            http.close()
            check(kind, False, repr(error))
    http.close()
    results.put((counts, samples, unexpected))


def make_repository(directory):
    shutil.copytree(ROOT / "models/trivial", directory / "trivial", ignore=shutil.ignore_patterns("README.md"))
    shutil.copytree(ROOT / "models/digits", directory / "digits", ignore=shutil.ignore_patterns("samples"))
    (directory / "reloaded/1").mkdir(parents=True)
    shutil.copy(ROOT / "models/trivial/1/model.onnx", directory / "reloaded/1/model.onnx")


def reloader(directory, period, stop, log):
    """Every `period` s: add version N+1 of `reloaded` (written aside, then renamed in), and
    remove the oldest version once the server has had time to load the new one."""
    version = 1
    while not stop.wait(period):
        version += 1
        staging = directory / f".staging-{version}"
        staging.mkdir()
        shutil.copy(ROOT / "models/trivial/1/model.onnx", staging / "model.onnx")
        os.rename(staging, directory / "reloaded" / str(version))
        if stop.wait(min(5.0, period / 2)):
            break
        shutil.rmtree(directory / "reloaded" / str(version - 1))
        log.append(version)


def wait_ready(port, process, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"soak: the server exited with {process.returncode} while starting")
        try:
            client = HTTPClient(port)
            client.connect()
            client.sock.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: soak\r\n\r\n")
            status, _ = client.read_answer()
            client.close()
            if status == 200:
                return
        except (OSError, EOFError):
            pass
        time.sleep(0.2)
    raise SystemExit("soak: the server did not become ready")


def run_phase(workers, count, rest_port, grpc_port):
    results = multiprocessing.Queue()
    per_worker = count // workers
    processes = [multiprocessing.Process(target=worker, args=(i, rest_port, grpc_port, per_worker, results))
                 for i in range(workers)]
    for p in processes:
        p.start()
    collected = [results.get() for _ in processes]
    for p in processes:
        p.join()
    counts, samples, unexpected = {}, [], 0
    for c, s, u in collected:
        for kind, n in c.items():
            counts[kind] = counts.get(kind, 0) + n
        samples += s
        unexpected += u
    return counts, samples[:10], unexpected


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default=str(ROOT / ".build/release/model-server"))
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--warmup", type=int, default=40_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--reload-seconds", type=float, default=30.0)
    parser.add_argument("--rss-tolerance", type=float, default=0.10)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="soak-") as temp:
        repository = pathlib.Path(temp) / "repository"
        repository.mkdir()
        make_repository(repository)
        rest_port, grpc_port = free_port(), free_port()
        log_path = pathlib.Path(temp) / "server.log"
        with open(log_path, "wb") as log_file:
            server = subprocess.Popen([args.server, "--model_repository", str(repository),
                                       "--rest_api_port", str(rest_port), "--port", str(grpc_port),
                                       "--file_system_poll_wait_seconds", "1"],
                                      stdout=log_file, stderr=subprocess.STDOUT)
        try:
            wait_ready(rest_port, server)
            started = time.time()
            _, warm_samples, warm_unexpected = run_phase(args.workers, args.warmup, rest_port, grpc_port)
            time.sleep(2)
            rss_warm = rss_kib(server.pid)

            peak = [rss_warm]
            stop = threading.Event()
            reloads = []

            def sample():
                while not stop.wait(1.0):
                    if server.poll() is None:
                        peak[0] = max(peak[0], rss_kib(server.pid))

            threads = [threading.Thread(target=reloader, args=(repository, args.reload_seconds, stop, reloads)),
                       threading.Thread(target=sample)]
            for t in threads:
                t.start()
            soak_started = time.time()
            counts, samples, unexpected = run_phase(args.workers, args.requests, rest_port, grpc_port)
            elapsed = time.time() - soak_started
            stop.set()
            for t in threads:
                t.join()
            time.sleep(3)
            alive = server.poll() is None
            rss_after = rss_kib(server.pid) if alive else 0
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        total = sum(counts.values())
        growth = (rss_after - rss_warm) / rss_warm if rss_warm else 0.0
        report = {
            "requests": total, "seconds": round(elapsed, 1), "requests_per_second": round(total / elapsed),
            "workers": args.workers, "reloads": len(reloads), "per_kind": counts,
            "unexpected": unexpected, "unexpected_samples": samples,
            "warmup_unexpected": warm_unexpected, "warmup_samples": warm_samples,
            "server_alive": alive, "server_exit": server.returncode,
            "rss_after_warmup_mib": round(rss_warm / 1024, 1), "rss_peak_mib": round(peak[0] / 1024, 1),
            "rss_after_mib": round(rss_after / 1024, 1), "rss_growth": round(growth, 4),
            "wall_seconds": round(time.time() - started, 1),
        }
        print(json.dumps(report, indent=1))
        if unexpected or warm_unexpected or not alive or growth > args.rss_tolerance:
            print("soak: FAILED", file=sys.stderr)
            print(log_path.read_text()[-3000:], file=sys.stderr)
            return 1
        return 0


if __name__ == "__main__":
    sys.exit(main())
