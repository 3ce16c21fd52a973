"""model-server's HTTP/1.1 layer at the socket level: keep-alive and pipelining, chunked
request bodies, Expect: 100-continue, body and header limits (413, 431), malformed
requests (400 and close), and clients that vanish mid-request. The server must keep
serving after each test (checked after every test)."""
import email.utils
import json
import re
import socket
import struct
import subprocess
import tempfile
import time

import numpy as np
import pytest

from server_fixtures import (HOST, RawReader, assert_close, assert_still_serving, base_path_args,
                             chunked, curl, digits_batch, digits_bytes, digits_reference, http_request_bytes,
                             make_model_dir, raw_connect, send_until_answered, v2_binary_request, v2_json_request,
                             v2_output, v2_parse_response, wait_until)

pytestmark = pytest.mark.timeout(300)

MAX_BODY = 256 * 1024  # --max_body_bytes for this module's server
X = digits_batch()


@pytest.fixture(scope="module")
def server(module_server_factory, tmp_path_factory):
    base = make_model_dir(tmp_path_factory.mktemp("models") / "digits", {1: digits_bytes()})
    return module_server_factory.start(*base_path_args("digits", base), "--max_body_bytes", MAX_BODY)


@pytest.fixture(autouse=True)
def still_serving_afterwards(server):
    yield
    assert_still_serving(server)


def predict_bytes(x, extra_headers=None):
    body = json.dumps({"instances": x.tolist()}).encode()
    headers = {"Content-Type": "application/json", **(extra_headers or {})}
    return http_request_bytes("POST", "/v1/models/digits:predict", body, headers), body


# --------------------------------------------------------------------------- keep-alive, pipelining

def test_pipelined_requests_answered_in_order_on_one_connection(server):
    predict, _ = predict_bytes(X[:2])
    pipeline = (http_request_bytes("GET", "/v2/health/ready", None) + predict +
                http_request_bytes("GET", "/v1/models/digits", None))
    with raw_connect(server) as sock:
        sock.sendall(pipeline)  # all three at once
        reader = RawReader(sock)
        first, second, third = (reader.read_response() for _ in range(3))
        assert (first.status, second.status, third.status) == (200, 200, 200)
        assert json.loads(first.body) == {"ready": True}
        assert_close(json.loads(second.body)["predictions"], digits_reference(X[:2]))
        assert json.loads(third.body)["model_version_status"][0]["state"] == "AVAILABLE"
        # still open (keep-alive): a fourth request on the same connection
        sock.sendall(http_request_bytes("GET", "/v2/health/live", None))
        fourth = reader.read_response()
        assert fourth.status == 200 and json.loads(fourth.body) == {"live": True}


def test_keep_alive_many_sequential_requests(server):
    with raw_connect(server) as sock:
        reader = RawReader(sock)
        for i in range(20):
            predict, _ = predict_bytes(X[i % 10:i % 10 + 1])
            sock.sendall(predict)
            response = reader.read_response()
            assert response.status == 200, response.body
            assert int(np.argmax(json.loads(response.body)["predictions"][0])) == i % 10


def test_connection_close_is_honored(server):
    with raw_connect(server) as sock:
        sock.sendall(http_request_bytes("GET", "/v2/health/ready", None, {"Connection": "close"}))
        reader = RawReader(sock)
        response = reader.read_response()
        assert response.status == 200
        assert reader.closed_by_peer(timeout=10)


def test_http_1_0_request_is_answered_and_closed(server):
    with raw_connect(server) as sock:
        sock.sendall(b"GET /v2/health/ready HTTP/1.0\r\n\r\n")
        reader = RawReader(sock)
        response = reader.read_response()
        assert response.status == 200
        assert reader.closed_by_peer(timeout=10)


# --------------------------------------------------------------------------- chunked request bodies

def test_chunked_json_request(server):
    body = json.dumps(v2_json_request(X)).encode()
    head = http_request_bytes("POST", "/v2/models/digits/infer", None,
                              {"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    with raw_connect(server) as sock:
        sock.sendall(head)
        encoded = chunked(body, [1, 7, 100, 4096])  # odd chunk sizes ...
        for offset in range(0, len(encoded), 1000):  # ... arriving in pieces that split them
            sock.sendall(encoded[offset:offset + 1000])
            time.sleep(0.001)
        response = RawReader(sock).read_response()
    assert response.status == 200, response.body
    assert_close(v2_output(json.loads(response.body), "logits"), digits_reference(X))


def test_chunked_binary_request(server):
    body, json_length = v2_binary_request([("image", X)], parameters={"binary_data_output": True})
    head = http_request_bytes("POST", "/v2/models/digits/infer", None,
                              {"Inference-Header-Content-Length": json_length, "Transfer-Encoding": "chunked"})
    with raw_connect(server) as sock:
        sock.sendall(head + chunked(body, [333]))
        response = RawReader(sock).read_response()
    assert response.status == 200, response.body
    headers = {name.title(): value for name, value in response.headers.items()}
    _, arrays = v2_parse_response(response.body, headers)
    assert_close(arrays["logits"], digits_reference(X))


def test_chunked_request_from_requests_generator(server):
    body = json.dumps({"instances": X.tolist()}).encode()
    pieces = (body[i:i + 500] for i in range(0, len(body), 500))  # a generator: requests sends it chunked
    response = server.post("/v1/models/digits:predict", data=pieces, headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    assert_close(response.json()["predictions"], digits_reference(X))


# --------------------------------------------------------------------------- Expect: 100-continue

def test_expect_100_continue_raw(server):
    predict, body = predict_bytes(X, extra_headers={"Expect": "100-continue"})
    head = predict[:len(predict) - len(body)]
    with raw_connect(server) as sock:
        sock.sendall(head)
        reader = RawReader(sock)
        interim = reader.read_response(skip_interim=False)
        assert interim.status == 100  # before any byte of the body was sent
        sock.sendall(body)
        response = reader.read_response()
    assert response.status == 200, response.body
    assert_close(json.loads(response.body)["predictions"], digits_reference(X))


def test_expect_100_continue_curl(server, tmp_path):
    x = np.repeat(X, 3, axis=0)  # 30 rows, ~12 KB of JSON
    request = tmp_path / "request.json"
    request.write_text(json.dumps(v2_json_request(x)))
    result = curl(server, "/v2/models/digits/infer", "-H", "Content-Type: application/json",
                  "-H", "Expect: 100-continue", "--expect100-timeout", "30", "--data-binary", f"@{request}")
    assert "> Expect: 100-continue" in result.verbose
    assert "< HTTP/1.1 100 Continue" in result.verbose, result.verbose
    assert result.status == 200, result.body[:300]
    assert_close(v2_output(result.json(), "logits"), digits_reference(x))


def test_expect_100_continue_with_too_large_body_gets_413_without_100(server):
    head = http_request_bytes("POST", "/v1/models/digits:predict", None,
                              {"Content-Type": "application/json", "Expect": "100-continue",
                               "Content-Length": MAX_BODY + 1}, content_length=False)
    with raw_connect(server) as sock:
        sock.sendall(head)
        response = RawReader(sock).read_response(skip_interim=False)
    assert response.status == 413, (response.status, response.body)
    assert json.loads(response.body)["error"]


# --------------------------------------------------------------------------- limits

def test_body_too_large_by_content_length_is_413(server):
    """Rejected from the header alone: the client never sends the body."""
    head = http_request_bytes("POST", "/v2/models/digits/infer", None,
                              {"Content-Type": "application/json", "Content-Length": MAX_BODY + 1},
                              content_length=False)
    with raw_connect(server) as sock:
        sock.sendall(head)
        response = RawReader(sock).read_response()
    assert response.status == 413
    assert response.headers["content-type"].startswith("application/json")
    assert json.loads(response.body)["error"]


def test_body_at_the_limit_is_accepted(server):
    body = json.dumps({"instances": X[:1].tolist()}).encode()
    body = body[:-1] + b" " * (MAX_BODY - len(body)) + b"}"  # JSON padded to exactly MAX_BODY bytes
    assert len(body) == MAX_BODY
    response = server.post("/v1/models/digits:predict", data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text[:300]


def test_chunked_body_too_large_is_413(server):
    head = http_request_bytes("POST", "/v2/models/digits/infer", None,
                              {"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    size = 2 * MAX_BODY
    head += b"%x\r\n" % size
    with raw_connect(server) as sock:
        answer = send_until_answered(sock, head, b" " * 16384, limit=len(head) + size)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]


def test_body_too_large_with_curl_is_413(server, tmp_path):
    request = tmp_path / "big.json"
    request.write_bytes(b'{"instances": [' + b"0.0, " * (MAX_BODY // 5) + b"0.0]}")
    result = curl(server, "/v1/models/digits:predict", "-H", "Content-Type: application/json",
                  "-H", "Expect: 100-continue", "--expect100-timeout", "30", "--data-binary", f"@{request}")
    assert "< HTTP/1.1 100 Continue" not in result.verbose  # refused before the body was sent
    assert result.status == 413, result.body[:300]
    assert json.loads(result.body)["error"]


def test_header_too_large_is_431(server):
    head = b"GET /v2/health/ready HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\nX-Filler: "
    with raw_connect(server) as sock:
        answer = send_until_answered(sock, head, b"a" * 16384, limit=4 * 1024 * 1024)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]


# --------------------------------------------------------------------------- malformed requests

@pytest.mark.parametrize("garbage", [
    b"THIS IS NOT HTTP\r\n\r\n",
    b"\x00\x01\x02\x03\xff\xfe garbage \r\n\r\n",
    b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\nheader line without a colon\r\n\r\n",
    b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nContent-Length: twelve\r\n\r\n",
    b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
], ids=["words", "binary", "header-without-colon", "bad-content-length", "bad-chunk-size"])
def test_malformed_request_gets_400_and_close(server, garbage):
    with raw_connect(server) as sock:
        sock.sendall(garbage)
        reader = RawReader(sock)
        response = reader.read_response()
        assert response.status == 400, (response.status, response.body)
        assert reader.closed_by_peer(timeout=10)


# --------------------------------------------------------------------------- vanishing clients

def test_client_disconnects_mid_body(server):
    predict, body = predict_bytes(X)
    for _ in range(3):
        with raw_connect(server) as sock:
            sock.sendall(predict[:len(predict) - len(body) // 2])  # headers and half the body
        # closed here; the server must drop the request and carry on


def test_client_disconnects_mid_headers(server):
    with raw_connect(server) as sock:
        sock.sendall(b"POST /v1/models/digits:predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")


def test_client_disconnects_before_response(server):
    x = np.repeat(X, 3, axis=0)  # 30 rows
    body, json_length = v2_binary_request([("image", x)], parameters={"binary_data_output": True})
    request = http_request_bytes("POST", "/v2/models/digits/infer", body,
                                 {"Inference-Header-Content-Length": json_length})
    for _ in range(5):
        sock = raw_connect(server)
        sock.sendall(request)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with RST
        sock.close()


def test_idle_connection_does_not_block_others(server):
    with raw_connect(server) as idle:
        idle.sendall(b"GET /v2/health/ready HTTP/1.1\r\n")  # never finished
        for _ in range(3):
            assert server.get("/v2/health/live").status_code == 200


def test_error_response_on_keep_alive_connection_keeps_it_usable(server):
    with raw_connect(server) as sock:
        reader = RawReader(sock)
        sock.sendall(http_request_bytes("GET", "/v2/models/no_such_model", None))
        missing = reader.read_response()
        assert missing.status == 404 and json.loads(missing.body)["error"]
        sock.sendall(http_request_bytes("GET", "/v2/health/live", None))
        assert reader.read_response().status == 200


# --------------------------------------------------------------------------- Date (RFC 9110 §6.6.1)

IMF_FIXDATE = re.compile(r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
                         r"\d{4} \d\d:\d\d:\d\d GMT")


def assert_current_date(value):
    """`value` is an IMF-fixdate within a few seconds of this machine's clock."""
    assert value is not None, "no Date field"
    assert IMF_FIXDATE.fullmatch(value), value
    when = email.utils.parsedate_to_datetime(value)
    assert abs(when.timestamp() - time.time()) < 5, (value, time.time())


def test_every_http1_answer_has_a_date(server):
    """200 (GET, POST, HEAD), 404, 413 and a 400 rejection all carry Date."""
    predict, _ = predict_bytes(X[:1])
    with raw_connect(server) as sock:
        reader = RawReader(sock)
        for request, status, head_only in [(http_request_bytes("GET", "/v2/health/ready", None), 200, False),
                                           (predict, 200, False),
                                           (http_request_bytes("HEAD", "/v2/models/digits", None), 200, True),
                                           (http_request_bytes("GET", "/v2/models/no_such_model", None), 404, False)]:
            sock.sendall(request)
            response = reader.read_response(head_only=head_only)
            assert response.status == status, (response.status, response.body)
            assert_current_date(response.headers.get("date"))
    with raw_connect(server) as sock:
        sock.sendall(b"POST /v1/models/digits:predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1))
        response = RawReader(sock).read_response()
        assert response.status == 413
        assert_current_date(response.headers.get("date"))
    with raw_connect(server) as sock:
        sock.sendall(b"\x00\x01 garbage \r\n\r\n")
        response = RawReader(sock).read_response()
        assert response.status == 400
        assert_current_date(response.headers.get("date"))


def test_http2_rest_answer_has_a_date(server):
    """An HTTP/2 (h2c) REST answer carries one date field too, for found and missing models."""
    for path, status in [("/v2/models/digits", 200), ("/v2/models/no_such_model", 404)]:
        result = subprocess.run(["nghttp", "-v", f"http://{HOST}:{server.rest_port}{path}"], capture_output=True, timeout=60)
        output = result.stdout.decode()
        assert f":status: {status}" in output, output
        dates = re.findall(r"recv \(stream_id=\d+\) date: (.*)", output)
        assert len(dates) == 1, output
        assert_current_date(dates[0].strip())


# --------------------------------------------------------------------------- HTTP/2 on the REST port

def _read_frame(sock):
    header = b""
    while len(header) < 9:
        chunk = sock.recv(9 - len(header))
        assert chunk, "connection closed before a whole HTTP/2 frame header"
        header += chunk
    length = int.from_bytes(header[:3], "big")
    payload = b""
    while len(payload) < length:
        chunk = sock.recv(length - len(payload))
        assert chunk, "connection closed inside an HTTP/2 frame"
        payload += chunk
    return header[3], header[4], payload


@pytest.mark.parametrize("pieces", [1, 24], ids=["one-write", "byte-by-byte"])
def test_http2_preface_starts_http2_with_settings(server, pieces):
    """Prior knowledge (h2c): the preface, in one write or trickled, makes the REST port answer
    with its SETTINGS frame (type 4, no ACK flag), not an HTTP/1.1 response."""
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    with socket.create_connection((HOST, server.rest_port), timeout=10) as sock:
        step = len(preface) // pieces
        for offset in range(0, len(preface), step):
            sock.sendall(preface[offset:offset + step])
            time.sleep(0.01 if pieces > 1 else 0)
        sock.sendall(struct.pack(">I", 0)[1:] + bytes([4, 0]) + struct.pack(">I", 0))  # empty SETTINGS
        frame_type, flags, payload = _read_frame(sock)
        assert frame_type == 4 and flags & 1 == 0, (frame_type, flags, payload)
        assert len(payload) % 6 == 0
        settings = {struct.unpack(">H", payload[i:i + 2])[0]: struct.unpack(">I", payload[i + 2:i + 6])[0]
                    for i in range(0, len(payload), 6)}
        assert settings.get(3, 0) >= 100, settings  # MAX_CONCURRENT_STREAMS


def test_rest_over_h2c_matches_http1(server):
    """nghttp (HTTP/2, prior knowledge) gets the same V2 answer as HTTP/1.1; HEAD gets no body."""
    x = X[:2]
    body = json.dumps(v2_json_request(x)).encode()
    expected = v2_output(server.post("/v2/models/digits/infer", json=v2_json_request(x)).json(), "logits")
    with tempfile.NamedTemporaryFile() as data:
        data.write(body)
        data.flush()
        result = subprocess.run(["nghttp", "-v", f"--data={data.name}", "-H", "content-type: application/json",
                                 f"http://{HOST}:{server.rest_port}/v2/models/digits/infer"],
                                capture_output=True, timeout=60)
    output = result.stdout.decode()
    assert result.returncode == 0 and "recv (stream_id=13) :status: 200" in output, output
    start = output.index('{"model_name"')
    answer, _ = json.JSONDecoder().raw_decode(output[start:])
    assert_close(np.asarray(v2_output(answer, "logits")), np.asarray(expected))
    head = subprocess.run(["nghttp", "-n", "-v", "-H", ":method: HEAD", f"http://{HOST}:{server.rest_port}/v2/models/digits"],
                          capture_output=True, timeout=60)
    head_output = head.stdout.decode()
    assert head.returncode == 0 and ":status: 200" in head_output and "recv DATA frame" not in head_output, head_output
    assert "RST_STREAM" not in head_output, head_output


def test_out_of_descriptors_does_not_spin(server_factory, tmp_path):
    """With the process out of file descriptors, waiting connections are accepted and closed
    (the reserved descriptor) and the listener does not busy-loop; serving resumes after."""
    import os
    server = server_factory.start(*base_path_args("digits", make_model_dir(tmp_path / "digits", {1: digits_bytes()})))
    pid = server.process.pid
    soft = next(line.split()[3] for line in open(f"/proc/{pid}/limits") if line.startswith("Max open files"))
    subprocess.run(["prlimit", "--pid", str(pid), "--nofile=64:"], check=True)  # the soft limit only

    def cpu_ticks():
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    clients = []
    try:
        for _ in range(100):
            client = socket.socket()
            client.settimeout(5)
            try:
                client.connect((HOST, server.rest_port))
            except OSError:
                client.close()
                continue
            clients.append(client)
        time.sleep(0.5)
        before = cpu_ticks()
        time.sleep(2)
        spent = cpu_ticks() - before
        assert spent < 20, f"{spent} CPU ticks in 2 s while out of descriptors (busy loop)"
    finally:
        for client in clients:
            client.close()
    subprocess.run(["prlimit", "--pid", str(pid), f"--nofile={soft}:"], check=True)
    wait_until(lambda: server.get("/v2/health/ready").status_code == 200, 10, "serving again")


def _read_to_eof(sock):
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def test_half_closed_client_gets_its_answers(server):
    """A client that shuts down its sending side after the requests (nc -N) still reads
    every answer; then the server closes."""
    sock = raw_connect(server)
    sock.sendall(http_request_bytes("GET", "/v2/health/ready") + http_request_bytes("GET", "/v2/health/live"))
    sock.shutdown(socket.SHUT_WR)
    data = _read_to_eof(sock)
    sock.close()
    assert data.count(b"HTTP/1.1 200 ") == 2, data


def test_malformed_request_after_pipelined_ones(server):
    """Requests before a malformed one are answered in order, then a 400, then the close."""
    sock = raw_connect(server)
    sock.sendall(http_request_bytes("GET", "/v2/health/ready") * 3 + b"BAD\x01 / HTTP/1.1\r\n\r\n")
    data = _read_to_eof(sock)
    sock.close()
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", data)
    assert statuses == [b"200", b"200", b"200", b"400"], data
