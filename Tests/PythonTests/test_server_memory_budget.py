"""model-server's global memory budget (--max_buffered_bytes): request bodies and unsent
answers held in memory, summed over every connection of both ports, HTTP/1.1 and HTTP/2.
Past it a new request body is refused (HTTP 503 with Retry-After, gRPC RESOURCE_EXHAUSTED,
both naming the budget) instead of growing the process; the budget comes back when bodies
are answered or their connections close."""
import subprocess
import time

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from server_fixtures import (DIGITS_SAMPLES, RawReader, assert_error, assert_still_serving, digits_bytes,
                             http_request_bytes, make_model_dir, raw_connect, v2_json_request)

pytestmark = pytest.mark.timeout(300)

BODY_LIMIT = 1_000_000
BUDGET = 3 * BODY_LIMIT


@pytest.fixture(scope="module")
def server(module_server_factory, tmp_path_factory):
    repository = tmp_path_factory.mktemp("repository")
    make_model_dir(repository / "digits", {1: digits_bytes()})
    return module_server_factory.start("--model_repository", repository, "--max_buffered_bytes", BUDGET,
                                       "--max_body_bytes", BODY_LIMIT, "--grpc_max_message_bytes", BODY_LIMIT)


def hold_bodies(server, count, length=BODY_LIMIT):
    """Connections that announced `length`-byte bodies and sent only their first bytes: each
    holds `length` bytes of the budget until it closes."""
    held = []
    for _ in range(count):
        sock = raw_connect(server)
        head = http_request_bytes("POST", "/v2/models/digits/infer", body=None,
                                  headers={"Content-Type": "application/json", "Content-Length": str(length)})
        sock.sendall(head + b'{"inputs": ')
        held.append(sock)
    time.sleep(0.3)  # the server has read the heads
    return held


def release(held):
    for sock in held:
        sock.close()
    time.sleep(0.5)  # the server has seen the closes


def digit_request():
    x = np.load(DIGITS_SAMPLES / "digit_7.npy").astype(np.float32)
    return v2_json_request(x)


def grpc_infer(server):
    x = np.load(DIGITS_SAMPLES / "digit_7.npy").astype(np.float32)
    request = service_pb2.ModelInferRequest(model_name="digits")
    tensor = request.inputs.add()
    tensor.name, tensor.datatype = "image", "FP32"
    tensor.shape.extend(x.shape)
    request.raw_input_contents.append(x.astype("<f4").tobytes())
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                                   request_serializer=service_pb2.ModelInferRequest.SerializeToString,
                                   response_deserializer=service_pb2.ModelInferResponse.FromString)
        try:
            response = call(request, timeout=30)
            return grpc.StatusCode.OK, "", response
        except grpc.RpcError as error:
            return error.code(), error.details(), None


def test_rest_body_past_the_budget_is_503_until_bodies_are_released(server):
    held = hold_bodies(server, 3)
    try:
        response = server.post("/v2/models/digits/infer", json=digit_request())
        assert_error(response, 503, "memory budget", "max_buffered_bytes")
        assert response.headers.get("Retry-After") == "1"
    finally:
        release(held)
    assert_still_serving(server)


def test_budget_is_shared_with_grpc_on_the_other_port(server):
    held = hold_bodies(server, 3)
    try:
        code, details, _ = grpc_infer(server)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, (code, details)
        assert "memory budget" in details
    finally:
        release(held)
    code, details, response = grpc_infer(server)
    assert code == grpc.StatusCode.OK, (code, details)
    logits = np.frombuffer(response.raw_output_contents[0], dtype="<f4")
    assert int(np.argmax(logits)) == 7


def test_requests_under_the_budget_still_pass_while_some_is_held(server):
    held = hold_bodies(server, 2)  # 2 MB of 3 MB held: a small request fits
    try:
        response = server.post("/v2/models/digits/infer", json=digit_request())
        assert response.status_code == 200, response.text
    finally:
        release(held)


def test_answered_bodies_give_their_budget_back(server):
    # 20 bodies of 0.9 MB, one after the other, on one keep-alive connection and on new ones:
    # 18 MB in all through a 3 MB budget, so every answer must have returned its bytes.
    filler = b" " * (900_000 - 200)
    body = b'{"inputs": []' + filler + b"}"
    sock = raw_connect(server)
    reader = RawReader(sock)
    try:
        for _ in range(10):
            sock.sendall(http_request_bytes("POST", "/v2/models/digits/infer", body=body,
                                            headers={"Content-Type": "application/json"}))
            answer = reader.read_response()
            assert answer.status == 400, (answer.status, answer.body[:300])  # an empty input list
    finally:
        sock.close()
    for _ in range(10):
        response = server.post("/v2/models/digits/infer", data=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 400, response.text[:300]


def test_chunked_bodies_are_counted_chunk_by_chunk(server):
    held = hold_bodies(server, 2) + hold_bodies(server, 1, length=BODY_LIMIT // 2)  # 0.5 MB left
    sock = raw_connect(server)
    try:
        sock.sendall(http_request_bytes("POST", "/v2/models/digits/infer", body=None,
                                        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
                                        content_length=False))
        chunk = b"x" * 300_000
        answered = b""
        for _ in range(3):  # 0.9 MB of chunks (under the body limit): refused past 0.5 MB
            try:
                sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.1)
        sock.settimeout(10)
        try:
            while b"\r\n\r\n" not in answered:
                part = sock.recv(65536)
                if not part:
                    break
                answered += part
        except ConnectionResetError:
            pass
        assert answered.startswith(b"HTTP/1.1 503"), answered[:300]
        assert b"memory budget" in answered
    finally:
        sock.close()
        release(held)
    assert_still_serving(server)


def test_budget_smaller_than_one_body_is_refused_at_start(model_server_binary, tmp_path):
    result = subprocess.run([str(model_server_binary), "--model_repository", str(tmp_path), "--max_buffered_bytes", "1000"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "max_buffered_bytes" in result.stderr, result.stderr
