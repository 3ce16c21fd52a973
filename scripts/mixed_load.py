#!/usr/bin/env python3
"""A mixed load against a model-server binary, for the sanitizer gate (scripts/sanitizers.sh).

Starts SERVER (a path) on free loopback ports with a Triton-style repository holding the
digits model (models/digits: JSON, binary tensors and JPEG input, dynamic batching, all
versions served), then for --seconds runs --clients threads, each cycling through:
  REST V1 predict (JSON tensors and {"b64"} JPEGs), REST V2 infer (JSON, the binary tensor
  extension, a BYTES tensor of JPEGs, a raw image/jpeg body), gRPC V2 ModelInfer and TF
  Serving Predict (on the gRPC port and on the REST port over h2c), metadata and metrics
  reads, bad inputs (wrong shapes, malformed JSON, a corrupt JPEG, unknown models, garbage
  bytes), and clients that vanish mid-body or reset the connection before the answer;
while one more thread adds a version every --reload-seconds and removes the oldest (the
server scans the repository every second), so requests race loads and unloads.

Outcomes are counted per kind; a 5xx other than 503 (a version being unloaded, or the memory
budget full), a wrong answer, a budget not whole again after the load (a body of 90% of
--max_buffered_bytes must be read), or a server that does not exit 0 on SIGTERM fails the
run (exit 1). Sanitizer
reports are the caller's to find (the *SAN_OPTIONS log_path files). Usage:
  mixed_load.py SERVER --seconds 60 --clients 6 [--log FILE]
"""
import argparse
import base64
import collections
import json
import os
import pathlib
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

import grpc
import grpc_tools
import numpy as np
import requests
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parents[1]
DIGITS = ROOT / "models" / "digits"
HOST = "127.0.0.1"
for variable in ("NO_PROXY", "no_proxy"):
    os.environ[variable] = "127.0.0.1,localhost"


def free_port():
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def messages():
    """{full message name: class} for the OIP and TF Serving protos, compiled by grpc_tools."""
    include = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as directory:
        out = pathlib.Path(directory) / "set.pb"
        status = protoc.main(["protoc", f"-I{ROOT / 'Protos'}", f"-I{include}", f"--descriptor_set_out={out}",
                              "--include_imports", str(ROOT / "Protos" / "grpc_service.proto"),
                              str(ROOT / "Protos" / "tf_serving_apis.proto")])
        assert status == 0, "protoc failed"
        files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    names = ["inference.ModelInferRequest", "inference.ModelInferResponse",
             "tensorflow.serving.PredictRequest", "tensorflow.serving.PredictResponse"]
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(name)) for name in names}


class Load:
    def __init__(self, server, rest_port, grpc_port, args):
        self.server, self.rest, self.grpc_port, self.args = server, rest_port, grpc_port, args
        self.base = f"http://{HOST}:{rest_port}"
        self.samples = np.concatenate([np.load(DIGITS / "samples" / f"digit_{k}.npy") for k in range(10)]).astype(np.float32)
        self.jpegs = [(DIGITS / "samples" / f"digit_{k}.jpg").read_bytes() for k in range(10)]
        self.proto = messages()
        self.counts = collections.Counter()
        self.failures = []
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def count(self, kind, ok, detail=""):
        with self.lock:
            self.counts[(kind, ok)] += 1
            if not ok and len(self.failures) < 20:
                self.failures.append(f"{kind}: {detail}"[:400])

    def expect(self, kind, response, allowed=(200,)):
        # 503: the version chosen was being unloaded; 404: it is gone. Never any other 5xx.
        ok = response.status_code in allowed or response.status_code in (404, 503)
        self.count(kind, ok, f"{response.status_code} {response.text[:200]}")
        if response.status_code == 503:
            self.count("(of which 503)", True)
        return response.status_code in allowed

    # ------------------------------------------------------------------ REST

    def v1_json(self, http, rows):
        body = {"instances": self.samples[rows].tolist()}
        r = http.post(f"{self.base}/v1/models/digits:predict", json=body, timeout=60)
        if self.expect("v1-json", r):
            predictions = r.json()["predictions"]
            self.check("v1-json", len(predictions) == len(rows), r.text[:200])

    def v1_jpeg(self, http, rows):
        body = {"instances": [{"b64": base64.b64encode(self.jpegs[k]).decode()} for k in rows]}
        self.expect("v1-jpeg", http.post(f"{self.base}/v1/models/digits:predict", json=body, timeout=60))

    def v2_json(self, http, rows, version):
        x = self.samples[rows]
        body = {"inputs": [{"name": "image", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}],
                "outputs": [{"name": "logits"}]}
        path = f"/v2/models/digits/versions/{version}/infer" if version else "/v2/models/digits/infer"
        r = http.post(self.base + path, json=body, timeout=60)
        if self.expect("v2-json", r):
            output = r.json()["outputs"][0]
            self.check("v2-json", output["shape"] == [len(rows), 10], r.text[:200])

    def v2_binary(self, http, rows):
        raw = np.ascontiguousarray(self.samples[rows]).tobytes()
        header = json.dumps({"inputs": [{"name": "image", "shape": [len(rows), 1, 8, 8], "datatype": "FP32",
                                         "parameters": {"binary_data_size": len(raw)}}],
                             "outputs": [{"name": "logits", "parameters": {"binary_data": True}}]}).encode()
        r = http.post(f"{self.base}/v2/models/digits/infer", data=header + raw, timeout=60,
                      headers={"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"})
        if self.expect("v2-binary", r):
            length = int(r.headers["Inference-Header-Content-Length"])
            self.check("v2-binary", len(r.content) - length == len(rows) * 40, f"{len(r.content)} {length}")

    def v2_jpeg(self, http, rows):
        payload = b"".join(len(self.jpegs[k]).to_bytes(4, "little") + self.jpegs[k] for k in rows)
        header = json.dumps({"inputs": [{"name": "image", "shape": [len(rows)], "datatype": "BYTES",
                                         "parameters": {"binary_data_size": len(payload)}}]}).encode()
        r = http.post(f"{self.base}/v2/models/digits/infer", data=header + payload, timeout=60,
                      headers={"Inference-Header-Content-Length": str(len(header))})
        self.expect("v2-jpeg-bytes", r)
        r = http.post(f"{self.base}/v2/models/digits/infer", data=self.jpegs[rows[0]], timeout=60,
                      headers={"Content-Type": "image/jpeg"})
        self.expect("v2-jpeg-raw", r)

    def metadata(self, http):
        for path in ["/v2/models/digits", "/v1/models/digits", "/v2/health/ready", "/metrics", "/v2/models/digits/ready"]:
            self.expect("metadata", http.get(self.base + path, timeout=60))

    def bad_inputs(self, http):
        cases = [
            ("/v2/models/digits/infer", json.dumps({"inputs": [{"name": "image", "shape": [1, 3], "datatype": "FP32",
                                                               "data": [1, 2, 3]}]}).encode(), {}),
            ("/v2/models/digits/infer", b'{"inputs": [{"name": "image", "shape": [1,', {}),
            ("/v1/models/digits:predict", b'{"instances": "no"}', {}),
            ("/v1/models/digits:predict", json.dumps({"instances": [{"b64": base64.b64encode(self.jpegs[0][:100]).decode()}]}).encode(), {}),
            ("/v2/models/digits/infer", b"\xff\xd8\xff garbage", {"Content-Type": "image/jpeg"}),
            ("/v2/models/digits/infer", b'{"inputs": []}', {"Inference-Header-Content-Length": "999"}),
        ]
        for path, body, headers in cases:
            r = http.post(self.base + path, data=body, headers=headers, timeout=60)
            self.count("bad-input", r.status_code == 400 or r.status_code in (404, 503), f"{path} {r.status_code} {r.text[:200]}")
        r = http.post(f"{self.base}/v2/models/no_such_model/infer", data=b"{}", timeout=60)
        self.count("bad-input", r.status_code == 404, f"unknown model {r.status_code}")

    # ------------------------------------------------------------------ sockets

    def vanish(self, rows):
        raw = np.ascontiguousarray(self.samples[rows]).tobytes()
        header = json.dumps({"inputs": [{"name": "image", "shape": [len(rows), 1, 8, 8], "datatype": "FP32",
                                         "parameters": {"binary_data_size": len(raw)}}]}).encode()
        body = header + raw
        request = (f"POST /v2/models/digits/infer HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {len(body)}\r\n"
                   f"Inference-Header-Content-Length: {len(header)}\r\n\r\n").encode() + body
        with socket.create_connection((HOST, self.rest), timeout=10) as sock:  # half the body, then close
            sock.sendall(request[:len(request) - len(body) // 2])
        sock = socket.create_connection((HOST, self.rest), timeout=10)  # the whole request, then a reset
        sock.sendall(request)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        with socket.create_connection((HOST, self.grpc_port), timeout=10) as sock:  # HTTP/2 preface, garbage frames
            sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes(random.randrange(256) for _ in range(64)))
        self.count("disconnect", True)

    # ------------------------------------------------------------------ gRPC

    def grpc_calls(self, channels, rows):
        channel = random.choice(channels)
        x = np.ascontiguousarray(self.samples[rows])
        oip = self.proto["inference.ModelInferRequest"]()
        oip.model_name = "digits"
        tensor = oip.inputs.add()
        tensor.name, tensor.datatype = "image", "FP32"
        tensor.shape.extend(x.shape)
        oip.raw_input_contents.append(x.tobytes())
        if random.random() < 0.2:
            tensor.shape[:] = [len(rows), 7]  # a bad shape: INVALID_ARGUMENT
        infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                                    request_serializer=lambda m: m.SerializeToString(),
                                    response_deserializer=self.proto["inference.ModelInferResponse"].FromString)
        self.grpc_outcome("grpc-v2", lambda: infer(oip, timeout=60))
        predict = self.proto["tensorflow.serving.PredictRequest"]()
        predict.model_spec.name = "digits"
        image = predict.inputs["image"]
        image.dtype = 1  # DT_FLOAT
        for size in x.shape:
            image.tensor_shape.dim.add().size = size
        image.tensor_content = x.tobytes()
        call = channel.unary_unary("/tensorflow.serving.PredictionService/Predict",
                                   request_serializer=lambda m: m.SerializeToString(),
                                   response_deserializer=self.proto["tensorflow.serving.PredictResponse"].FromString)
        self.grpc_outcome("grpc-tf", lambda: call(predict, timeout=60))

    def grpc_outcome(self, kind, call):
        try:
            call()
            self.count(kind, True)
        except grpc.RpcError as error:
            # RESOURCE_EXHAUSTED: the memory budget was full at that moment.
            expected = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE,
                        grpc.StatusCode.RESOURCE_EXHAUSTED}
            self.count(kind, error.code() in expected, f"{error.code()} {error.details()}")
            if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                self.count("(of which RESOURCE_EXHAUSTED)", True)

    def check(self, kind, condition, detail):
        if not condition:
            self.count(kind + "-answer", False, detail)

    # ------------------------------------------------------------------ threads

    def client(self, seed):
        rng = random.Random(seed)
        http = requests.Session()
        channels = [grpc.insecure_channel(f"{HOST}:{self.grpc_port}"), grpc.insecure_channel(f"{HOST}:{self.rest}")]
        while not self.stop.is_set():
            rows = [rng.randrange(10) for _ in range(rng.choice([1, 1, 2, 5]))]
            step = rng.randrange(10)
            try:
                if step == 0: self.v1_json(http, rows)
                elif step == 1: self.v1_jpeg(http, rows)
                elif step == 2: self.v2_json(http, rows, rng.choice([None, None, self.newest, self.oldest]))
                elif step == 3: self.v2_binary(http, rows)
                elif step == 4: self.v2_jpeg(http, rows)
                elif step == 5: self.grpc_calls(channels, rows)
                elif step == 6: self.bad_inputs(http)
                elif step == 7: self.vanish(rows)
                elif step == 8: self.metadata(http)
                else: self.grpc_calls(channels, rows)
            except (requests.RequestException, OSError) as error:
                self.count("connection", False, repr(error))
        for channel in channels:
            channel.close()

    def reloader(self, model_dir):
        while not self.stop.wait(self.args.reload_seconds):
            new = self.newest + 1
            staging = model_dir / f".{new}"
            (staging).mkdir()
            shutil.copy(DIGITS / "1" / "model.onnx", staging / "model.onnx")
            staging.rename(model_dir / str(new))  # the version appears whole
            self.newest = new
            old = self.oldest
            self.oldest = old + 1
            shutil.rmtree(model_dir / str(old))
            self.count("reload", True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("server")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--reload-seconds", type=float, default=3)
    parser.add_argument("--log", default=None, help="the server's stdout and stderr (default: inherited)")
    parser.add_argument("--ready-timeout", type=float, default=120)
    parser.add_argument("--max-buffered-bytes", type=int, default=8 << 20,
                        help="the server's --max_buffered_bytes; after the load a body of 90%% of it must be read in whole "
                             "(every byte the load held was given back)")
    args = parser.parse_args()

    work = pathlib.Path(tempfile.mkdtemp(prefix="mixed-load-"))
    model_dir = work / "repository" / "digits"
    shutil.copytree(DIGITS, model_dir)
    shutil.copytree(model_dir / "1", model_dir / "2")
    with open(model_dir / "config.pbtxt", "a") as config:
        config.write("\nversion_policy: { all: {} }\n")
    rest, grpc_port = free_port(), free_port()
    log = open(args.log, "ab") if args.log else None
    process = subprocess.Popen([args.server, "--model_repository", str(work / "repository"), "--rest_api_port", str(rest),
                                "--port", str(grpc_port), "--rest_api_host", HOST, "--file_system_poll_wait_seconds", "1",
                                "--compute_threads", "2", "--rest_api_num_threads", "2",
                                "--max_buffered_bytes", str(args.max_buffered_bytes)],
                               stdout=log, stderr=subprocess.STDOUT if log else None)
    status = 1
    try:
        deadline = time.monotonic() + args.ready_timeout
        while True:
            try:
                if requests.get(f"http://{HOST}:{rest}/v2/health/ready", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                print(f"mixed_load: the server did not become ready (exit {process.poll()})", file=sys.stderr)
                return 1
            time.sleep(0.2)
        load = Load(process, rest, grpc_port, args)
        load.oldest, load.newest = 1, 2
        threads = [threading.Thread(target=load.client, args=(seed,)) for seed in range(args.clients)]
        threads.append(threading.Thread(target=load.reloader, args=(model_dir,)))
        started = time.monotonic()
        for thread in threads:
            thread.start()
        load.stop.wait(args.seconds)
        load.stop.set()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        total = sum(count for (kind, _), count in load.counts.items() if not kind.startswith("("))
        bad = sum(count for (kind, ok), count in load.counts.items() if not ok)
        kinds = collections.Counter()
        for (kind, ok), count in load.counts.items():
            kinds[kind] += count
        print(f"mixed_load: {total} operations in {elapsed:.0f} s ({total / elapsed:.0f}/s), {bad} unexpected; "
              + ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items())))
        for failure in load.failures:
            print(f"  unexpected: {failure}")
        # The budget is whole again: a body of 90% of it is read to its end (400: not JSON),
        # not refused (503) for bytes the load failed to give back.
        filler = b"{" + b" " * int(args.max_buffered_bytes * 0.9)
        r = requests.post(f"http://{HOST}:{rest}/v2/models/digits/infer", data=filler, timeout=60)
        print(f"mixed_load: after the load a body of {len(filler)} bytes got {r.status_code} (400 expected)")
        bad += r.status_code != 400
        alive = process.poll() is None
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            code = "killed after 60 s"
        print(f"mixed_load: server {'exited ' + str(code) if alive else 'had died (' + str(process.returncode) + ')'}")
        status = 0 if alive and code == 0 and bad == 0 else 1
    finally:
        if process.poll() is None:
            process.kill()
        if log:
            log.close()
        shutil.rmtree(work, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
