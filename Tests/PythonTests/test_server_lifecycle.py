"""model-server's model lifecycle: TF Serving --model_config_file (version policies and
labels), a Triton --model_repository with config.pbtxt, the repository extension's
load/unload, a corrupt version dropped in while serving, hot reload under traffic with
zero failed requests, and graceful shutdown (SIGTERM under load, SIGINT, idle
keep-alive connections).

Versions are told apart by their outputs: version v of "digits" here is the digits
classifier with its logits scaled by v (server_fixtures.digits_bytes(v))."""
import http.client
import shutil
import signal
import threading
import time

import numpy as np
import pytest
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from server_fixtures import (ATOL, HOST, RTOL, RawReader, STOP_TIMEOUT, assert_close, assert_error,
                             assert_still_serving, available_versions, base_path_args, digits_batch, digits_bytes,
                             digits_reference, http_request_bytes, http_session, make_model_dir, mobilenet_bytes,
                             raw_connect, reference, tf_status, v2_binary_request, v2_json_request, v2_output,
                             v2_parse_response, wait_until, write_version)

pytestmark = pytest.mark.timeout(300)

X = digits_batch()
SCALED = {1: 1.0, 2: 2.0, 3: 3.0}  # version -> logits scale


def scaled_versions(*versions):
    return {version: digits_bytes(SCALED[version]) for version in versions}


def predict(server, path, x=X[:3]):
    response = server.post(path, json={"instances": x.tolist()})
    assert response.status_code == 200, f"{path}: {response.status_code} {response.text[:300]}"
    return np.asarray(response.json()["predictions"], dtype=np.float32)


def infer_v2(server, path, x=X[:3]):
    response = server.post(path, json=v2_json_request(x))
    assert response.status_code == 200, f"{path}: {response.status_code} {response.text[:300]}"
    body = response.json()
    return body["model_version"], v2_output(body, "logits")


# --------------------------------------------------------------------------- TF Serving model_config_file

CONFIG = """
model_config_list {{
  config {{
    name: "digits"
    base_path: "{root}/digits"
    model_platform: "onnx"
    model_version_policy {{ specific {{ versions: 1 versions: 2 }} }}
    version_labels {{ key: "stable" value: 1 }}
    version_labels {{ key: "canary" value: 2 }}
  }}
  config {{
    name: "latest2"
    base_path: "{root}/latest2"
    model_platform: "onnx"
    model_version_policy {{ latest {{ num_versions: 2 }} }}
  }}
  config {{
    name: "every"
    base_path: "{root}/every"
    model_platform: "onnx"
    model_version_policy {{ all {{}} }}
  }}
}}
"""


@pytest.fixture(scope="module")
def config_server(module_server_factory, tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    for name in ("digits", "latest2", "every"):
        make_model_dir(root / name, scaled_versions(1, 2, 3))
    config = root / "models.config"
    config.write_text(CONFIG.format(root=root))
    return module_server_factory.start("--model_config_file", config)


def test_config_file_lists_models(config_server):
    response = config_server.get("/v1/models")
    assert response.status_code == 200
    assert sorted(response.json()["models"]) == ["digits", "every", "latest2"]


@pytest.mark.parametrize("model, versions", [("digits", {"1", "2"}), ("latest2", {"2", "3"}),
                                             ("every", {"1", "2", "3"})])
def test_config_file_version_policies(config_server, model, versions):
    assert available_versions(config_server, model) == versions
    response = config_server.get(f"/v2/models/{model}")
    assert response.status_code == 200 and sorted(response.json()["versions"]) == sorted(versions)


@pytest.mark.parametrize("model, latest", [("digits", 2), ("latest2", 3), ("every", 3)])
def test_config_file_default_is_latest_served_version(config_server, model, latest):
    assert_close(predict(config_server, f"/v1/models/{model}:predict"), digits_reference(X[:3], SCALED[latest]))
    version, logits = infer_v2(config_server, f"/v2/models/{model}/infer")
    assert version == str(latest)
    assert_close(logits, digits_reference(X[:3], SCALED[latest]))
    response = config_server.get(f"/v1/models/{model}/metadata")
    assert response.json()["model_spec"]["version"] == str(latest)


@pytest.mark.parametrize("label, version", [("stable", 1), ("canary", 2)])
def test_config_file_version_labels(config_server, label, version):
    status = tf_status(config_server, "digits", f"/labels/{label}")
    assert list(status) == [str(version)] and status[str(version)]["state"] == "AVAILABLE"
    assert_close(predict(config_server, f"/v1/models/digits/labels/{label}:predict"),
                 digits_reference(X[:3], SCALED[version]))
    metadata = config_server.get(f"/v1/models/digits/labels/{label}/metadata")
    assert metadata.status_code == 200 and metadata.json()["model_spec"]["version"] == str(version)


@pytest.mark.parametrize("version", [1, 2])
def test_config_file_explicit_versions(config_server, version):
    assert_close(predict(config_server, f"/v1/models/digits/versions/{version}:predict"),
                 digits_reference(X[:3], SCALED[version]))
    served, logits = infer_v2(config_server, f"/v2/models/digits/versions/{version}/infer")
    assert served == str(version)
    assert_close(logits, digits_reference(X[:3], SCALED[version]))


def test_config_file_version_outside_policy_is_not_served(config_server):
    """digits/3 exists on disk but the specific policy excludes it."""
    assert_error(config_server.post("/v1/models/digits/versions/3:predict", json={"instances": [X[0].tolist()]}),
                 404, "3")
    assert_error(config_server.post("/v2/models/digits/versions/3/infer", json=v2_json_request(X[:1])), 404, "3")
    assert config_server.get("/v2/models/digits/versions/3/ready").status_code != 200


# --------------------------------------------------------------------------- Triton repository with config.pbtxt

DIGITS_PBTXT = """
name: "digits"
max_batch_size: 8
input [
  {
    name: "image"
    data_type: TYPE_FP32
    dims: [ 1, 8, 8 ]
  }
]
output [
  {
    name: "logits"
    data_type: TYPE_FP32
    dims: [ 10 ]
  }
]
version_policy: { specific: { versions: [ 1, 3 ] } }
"""

LATEST2_PBTXT = """
name: "latest2"
version_policy: { latest: { num_versions: 2 } }
"""


@pytest.fixture(scope="module")
def repository_server(module_server_factory, tmp_path_factory):
    """digits: config.pbtxt (max_batch_size 8, specific [1, 3]), versions 1-3 on disk;
    latest2: config.pbtxt with only a latest-2 policy; plain: no config.pbtxt, versions 1-2."""
    repository = tmp_path_factory.mktemp("repository")
    make_model_dir(repository / "digits", scaled_versions(1, 2, 3))
    (repository / "digits" / "config.pbtxt").write_text(DIGITS_PBTXT)
    make_model_dir(repository / "latest2", scaled_versions(1, 2, 3))
    (repository / "latest2" / "config.pbtxt").write_text(LATEST2_PBTXT)
    make_model_dir(repository / "plain", scaled_versions(1, 2))
    return module_server_factory.start("--model_repository", repository)


@pytest.fixture
def triton(repository_server):
    client = triton_http.InferenceServerClient(repository_server.host_port, connection_timeout=10.0,
                                               network_timeout=60.0)
    yield client
    client.close()


@pytest.mark.parametrize("model, ready, not_ready", [("digits", ["1", "3"], ["2"]), ("latest2", ["2", "3"], ["1"]),
                                                     ("plain", ["2"], ["1"])])
def test_repository_version_policies(triton, model, ready, not_ready):
    for version in ready:
        assert triton.is_model_ready(model, version), (model, version)
    for version in not_ready:
        assert not triton.is_model_ready(model, version), (model, version)
    assert sorted(triton.get_model_metadata(model)["versions"]) == ready


@pytest.mark.parametrize("model, latest", [("digits", 3), ("latest2", 3), ("plain", 2)])
def test_repository_default_version_is_latest(triton, model, latest):
    image = triton_http.InferInput("image", [3, 1, 8, 8], "FP32")
    image.set_data_from_numpy(X[:3])
    result = triton.infer(model, [image])
    assert result.get_response()["model_version"] == str(latest)
    assert_close(result.as_numpy("logits"), digits_reference(X[:3], SCALED[latest]))


def test_repository_metadata_from_config(triton):
    metadata = triton.get_model_metadata("digits")
    assert [(t["name"], t["datatype"], t["shape"]) for t in metadata["inputs"]] == [("image", "FP32", [-1, 1, 8, 8])]
    assert [(t["name"], t["datatype"], t["shape"]) for t in metadata["outputs"]] == [("logits", "FP32", [-1, 10])]


def test_repository_max_batch_size(triton):
    batch = np.concatenate([X, X])[:9]
    image = triton_http.InferInput("image", [8, 1, 8, 8], "FP32")
    image.set_data_from_numpy(batch[:8])
    assert_close(triton.infer("digits", [image]).as_numpy("logits"), digits_reference(batch[:8], SCALED[3]))
    too_big = triton_http.InferInput("image", [9, 1, 8, 8], "FP32")
    too_big.set_data_from_numpy(batch)
    with pytest.raises(InferenceServerException) as error:
        triton.infer("digits", [too_big])
    assert error.value.status() == "400" and "8" in error.value.message()


def test_repository_index_lists_versions(triton):
    index = triton.get_model_repository_index()
    ready = {(entry["name"], entry["version"]) for entry in index if entry["state"] == "READY"}
    assert ready == {("digits", "1"), ("digits", "3"), ("latest2", "2"), ("latest2", "3"), ("plain", "2")}, index


# --------------------------------------------------------------------------- repository extension: load / unload

def test_unload_and_load(server_factory, tmp_path):
    repository = tmp_path / "repository"
    make_model_dir(repository / "digits", scaled_versions(1))
    make_model_dir(repository / "plain", scaled_versions(1, 2))
    server = server_factory.start("--model_repository", repository)
    triton = triton_http.InferenceServerClient(server.host_port, connection_timeout=10.0, network_timeout=60.0)
    try:
        triton.unload_model("plain")
        wait_until(lambda: not triton.is_model_ready("plain"), 10, "plain unloaded")
        response = server.post("/v2/models/plain/infer", json=v2_json_request(X[:1]))
        assert response.status_code in (404, 503), response.text  # known to the repository, not loaded
        assert "plain" in response.json()["error"]
        index = {entry["name"]: entry for entry in triton.get_model_repository_index()}
        assert index["plain"]["state"] != "READY"
        assert_still_serving(server)  # the other model is untouched

        triton.load_model("plain")  # returns once loaded
        assert triton.is_model_ready("plain") and triton.is_model_ready("plain", "2")
        version, logits = infer_v2(server, "/v2/models/plain/infer")
        assert version == "2"
        assert_close(logits, digits_reference(X[:3], SCALED[2]))

        make_model_dir(repository / "newcomer", scaled_versions(1))  # added while serving, loaded on request
        triton.load_model("newcomer")
        assert triton.is_model_ready("newcomer")
        assert_close(infer_v2(server, "/v2/models/newcomer/infer")[1], digits_reference(X[:3]))

        with pytest.raises(InferenceServerException) as error:
            triton.load_model("no_such_model")
        assert error.value.status() in ("400", "404") and "no_such_model" in error.value.message()
        assert_still_serving(server)
    finally:
        triton.close()


def test_unload_load_with_plain_http(server_factory, tmp_path):
    """KServe-style bodies: empty POSTs, JSON answers or empty 200s."""
    repository = tmp_path / "repository"
    make_model_dir(repository / "digits", scaled_versions(1))
    server = server_factory.start("--model_repository", repository)
    assert server.post("/v2/repository/models/digits/unload").status_code == 200
    wait_until(lambda: server.get("/v2/models/digits/ready").status_code != 200, 10, "digits unloaded")
    assert server.post("/v2/repository/models/digits/load").status_code == 200
    assert server.get("/v2/models/digits/ready").status_code == 200
    assert_still_serving(server)


# --------------------------------------------------------------------------- corrupt version while serving

def test_corrupt_new_version_keeps_previous_serving(server_factory, tmp_path):
    base = make_model_dir(tmp_path / "digits", scaled_versions(1))
    server = server_factory.start(*base_path_args("digits", base))
    write_version(base, 2, b"this is not an ONNX model\n" * 100)

    def failed():
        status = tf_status(server, "digits")
        return status if "2" in status and status["2"]["status"]["error_code"] != "OK" else None
    status = wait_until(failed, 20, "version 2's load error in GET /v1/models/digits")
    assert status["2"]["state"] == "END", status
    assert status["2"]["status"]["error_message"], status
    assert status["1"] == {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}

    assert server.get("/v2/models/digits/versions/2/ready").status_code in (400, 503)
    assert server.get("/v2/models/digits/versions/1/ready").status_code == 200
    assert server.get("/v2/models/digits/ready").status_code == 200
    assert server.post("/v2/models/digits/versions/2/infer", json=v2_json_request(X[:1])).status_code in (404, 503)
    version, logits = infer_v2(server, "/v2/models/digits/infer")
    assert version == "1"
    assert_close(logits, digits_reference(X[:3]))
    assert_close(predict(server, "/v1/models/digits:predict"), digits_reference(X[:3]))
    assert_still_serving(server)


def _oversized_models():
    """Models whose shapes ask for more memory than any machine has or overflow: each must
    fail to load with a message, never take the server down."""
    import onnx
    from onnx import TensorProto, helper
    from server_fixtures import digits_bytes

    def digits_with(change):
        model = onnx.load_from_string(digits_bytes())
        change(model.graph)
        return model.SerializeToString()

    def initializer(dims, **fields):
        def change(graph):
            tensor = graph.initializer.add()
            tensor.name, tensor.data_type = "huge", TensorProto.FLOAT
            tensor.dims.extend(dims)
            for key, values in fields.items():
                getattr(tensor, key).extend(values)
        return change

    def node_model(nodes, initializers):
        graph = helper.make_graph(nodes, "huge", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 7
        return model.SerializeToString()

    return {
        "dims-overflow": digits_with(initializer([1 << 32, 1 << 32])),
        "1-TiB-without-data": digits_with(initializer([1 << 38])),
        "float-data-short": digits_with(initializer([1 << 36], float_data=[1.0])),
        "pad-2^40": node_model([helper.make_node("Pad", ["x", "pads"], ["y"])],
                               [helper.make_tensor("pads", TensorProto.INT64, [4], [0, 0, 1 << 40, 1 << 40])]),
        "pad-overflow": node_model([helper.make_node("Pad", ["x", "pads"], ["y"])],
                                   [helper.make_tensor("pads", TensorProto.INT64, [4], [0, 0, (1 << 62), (1 << 62)])]),
        "constant-of-shape-2^50": node_model(
            [helper.make_node("ConstantOfShape", ["shape"], ["c"]), helper.make_node("Add", ["x", "c"], ["y"])],
            [helper.make_tensor("shape", TensorProto.INT64, [2], [1 << 25, 1 << 25])]),
    }


@pytest.mark.parametrize("case", list(_oversized_models()))
def test_oversized_new_version_is_reported_and_previous_keeps_serving(server_factory, tmp_path, case):
    base = make_model_dir(tmp_path / "digits", scaled_versions(1))
    server = server_factory.start(*base_path_args("digits", base))
    write_version(base, 2, _oversized_models()[case])

    def failed():
        status = tf_status(server, "digits")
        return status if "2" in status and status["2"]["status"]["error_code"] != "OK" else None
    status = wait_until(failed, 20, f"version 2 ({case})'s load error in GET /v1/models/digits")
    assert status["2"]["state"] == "END", status
    message = status["2"]["status"]["error_message"]
    assert any(word in message for word in ("bytes", "overflow")), message
    assert status["1"]["state"] == "AVAILABLE", status
    assert_still_serving(server)


# --------------------------------------------------------------------------- hot reload under traffic

def test_hot_reload_under_traffic_has_zero_failed_requests(server_factory, tmp_path):
    """Two clients (V2 and TF Serving REST) send requests back to back while version 2
    is copied in and version 1 removed: not one request may fail."""
    base = make_model_dir(tmp_path / "digits", scaled_versions(1))
    server = server_factory.start(*base_path_args("digits", base))
    x = X[:2]
    expected = {version: digits_reference(x, SCALED[version]) for version in (1, 2)}
    seen, failures, stop, lock = [], [], threading.Event(), threading.Lock()

    def matching_version(values):
        for version, reference_values in expected.items():
            if values.shape == reference_values.shape and np.allclose(values, reference_values, atol=ATOL, rtol=RTOL):
                return version
        return None

    def client(protocol):
        session = http_session()
        deadline = time.monotonic() + 90  # hard bound; normally stopped much earlier
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                sent = time.monotonic()
                if protocol == "v2":
                    response = session.post(server.url("/v2/models/digits/infer"), json=v2_json_request(x),
                                            timeout=10)
                else:
                    response = session.post(server.url("/v1/models/digits:predict"),
                                            json={"instances": x.tolist()}, timeout=10)
                if response.status_code != 200:
                    failures.append(f"{protocol} {response.status_code}: {response.text[:200]}")
                    continue
                body = response.json()
                values = v2_output(body, "logits") if protocol == "v2" else np.asarray(body["predictions"], np.float32)
                version = matching_version(values)
                if version is None or (protocol == "v2" and body["model_version"] != str(version)):
                    failures.append(f"{protocol} response matches no version: {body}")
                    continue
                with lock:
                    seen.append((sent, version))
            except Exception as error:  # noqa: BLE001 - every failure counts
                failures.append(f"{protocol} {error!r}")
        session.close()

    def traffic_for(seconds, minimum):
        since, count = time.monotonic(), len(seen)
        wait_until(lambda: time.monotonic() - since >= seconds and len(seen) >= count + minimum, seconds + 15,
                   f"{minimum} responses in {seconds} s")

    threads = [threading.Thread(target=client, args=(protocol,), daemon=True) for protocol in ("v2", "tf")]
    for thread in threads:
        thread.start()
    try:
        traffic_for(1.0, 20)
        write_version(base, 2, digits_bytes(SCALED[2]))  # written elsewhere, renamed in
        wait_until(lambda: "2" in available_versions(server, "digits") and
                   server.get("/v1/models/digits/metadata").json()["model_spec"]["version"] == "2",
                   30, "version 2 AVAILABLE and latest")
        traffic_for(1.0, 20)
        shutil.rmtree(base / "1")
        wait_until(lambda: available_versions(server, "digits") == {"2"}, 30, "version 1 gone, only 2 AVAILABLE")
        switched = time.monotonic()
        traffic_for(2.0, 20)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == [], failures[:10]
    versions = [version for _, version in seen]
    assert versions[0] == 1 and 2 in versions
    # `switched` is after version 1 left the status; a request sent later must meet version 2.
    assert all(version == 2 for sent, version in seen if sent > switched), "version 1 still answering"
    assert tf_status(server, "digits")["2"]["state"] == "AVAILABLE"


# --------------------------------------------------------------------------- shutdown

def test_sigterm_under_load_drains_in_flight_requests(server_factory, tmp_path, keras_models):
    """Every request the server took in is answered completely (200, or a clean 503
    during the drain); the server exits 0."""
    model = mobilenet_bytes(keras_models)
    base = make_model_dir(tmp_path / "mobilenet", {1: model})
    server = server_factory.start(*base_path_args("mobilenet", base))
    x = np.load(keras_models / "mobilenet_v2" / "input_b1.npy").astype(np.float32)
    expected = reference(model, {"input": x})["predictions"]
    body, json_length = v2_binary_request([("input", x)], parameters={"binary_data_output": True})
    headers = {"Inference-Header-Content-Length": str(json_length), "Content-Type": "application/octet-stream"}
    records, stop, lock = [], threading.Event(), threading.Lock()

    def worker(number):
        connection = None
        deadline = time.monotonic() + 120
        while not stop.is_set() and time.monotonic() < deadline:
            record = {"worker": number, "start": time.monotonic()}
            try:
                if connection is None:
                    connection = http.client.HTTPConnection(HOST, server.rest_port, timeout=60)
                    connection.connect()
                connection.request("POST", "/v2/models/mobilenet/infer", body=body, headers=headers)
                record["sent"] = time.monotonic()
                response = connection.getresponse()
                record.update(status=response.status, data=response.read(), headers=dict(response.getheaders()))
                if response.will_close:
                    connection.close()
                    connection = None
            except ConnectionRefusedError:
                record["outcome"] = "refused"  # the listener is closed: nothing was accepted
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as error:
                record.update(outcome="closed", error=repr(error))  # no byte of a response
            except Exception as error:  # noqa: BLE001 - truncated responses, timeouts...
                record.update(outcome="broken", error=repr(error))
            record["end"] = time.monotonic()
            with lock:
                records.append(record)
            if "outcome" in record and connection is not None:
                connection.close()
                connection = None
            if record.get("outcome") == "refused":
                break
        if connection is not None:
            connection.close()

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(3)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: sum(r.get("status") == 200 for r in list(records)) >= 6, 60, "traffic before SIGTERM")
        time.sleep(0.3)
        signaled = time.monotonic()
        server.send_signal(signal.SIGTERM)
        code = server.wait_exit(STOP_TIMEOUT)
        if code is None:
            server.kill()
            pytest.fail(f"no exit within {STOP_TIMEOUT} s of SIGTERM under load\n{server.describe()}")
        assert code == 0, server.describe()
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=70)
    assert not any(thread.is_alive() for thread in threads)

    margin = 0.5  # a request sent this close to the signal may still be unread in the socket (loaded machine)
    problems = []
    for record in records:
        status, outcome = record.get("status"), record.get("outcome")
        before = record.get("sent", record["start"]) < signaled - margin
        if status == 200:
            try:
                response_headers = {k.title(): v for k, v in record["headers"].items()}
                _, arrays = v2_parse_response(record["data"], response_headers)
                assert_close(arrays["predictions"], expected)
            except AssertionError as error:
                problems.append(f"bad 200 body: {error}")
        elif status == 503 and not before:
            if b'"error"' not in record["data"]:
                problems.append(f"503 without a JSON error: {record['data'][:200]!r}")
        elif outcome in ("refused", "closed") and not before:
            pass  # not taken in: refused, or an idle keep-alive connection closed
        else:
            problems.append(f"{'before' if before else 'after'} SIGTERM: status={status} outcome={outcome} "
                            f"{record.get('error', '')}")
    assert problems == [], problems[:10]
    drained = [r for r in records if r.get("status") == 200 and r["start"] < signaled < r["end"]]
    assert drained, "no request was in flight at SIGTERM: the drain was not exercised"


def test_sigint_exits_zero(server_factory, tmp_path):
    base = make_model_dir(tmp_path / "digits", scaled_versions(1))
    server = server_factory.start(*base_path_args("digits", base))
    assert_still_serving(server)
    server.send_signal(signal.SIGINT)
    assert server.wait_exit(STOP_TIMEOUT) == 0, server.describe()


def test_sigterm_with_idle_keep_alive_connection_exits_zero(server_factory, tmp_path):
    base = make_model_dir(tmp_path / "digits", scaled_versions(1))
    server = server_factory.start(*base_path_args("digits", base))
    with raw_connect(server) as sock:
        sock.sendall(http_request_bytes("GET", "/v2/health/live", None))
        assert RawReader(sock).read_response().status == 200  # the connection stays open, idle
        started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        assert server.wait_exit(STOP_TIMEOUT) == 0, server.describe()
    assert time.monotonic() - started < STOP_TIMEOUT


def test_drain_delay_keeps_serving_while_not_ready(server_factory, tmp_path):
    """--drain_delay_seconds: after SIGTERM the server reports not ready (REST and gRPC health)
    yet still accepts new connections and answers inference, so a Kubernetes rolling update
    loses no request while endpoints catch up; then it drains and exits 0. A second signal
    ends the wait."""
    from grpc_helpers import HEALTH_CHECK, SERVING, channel, grpc_address, raw_method
    base = make_model_dir(tmp_path / "digits", scaled_versions(1))
    server = server_factory.start(*base_path_args("digits", base), "--drain_delay_seconds", "3")
    server.send_signal(signal.SIGTERM)
    wait_until(lambda: server.get("/v2/health/ready").status_code == 503, 5, "readiness false after SIGTERM")
    chan = channel(grpc_address(server))
    try:
        answer = raw_method(chan, HEALTH_CHECK)(b"", timeout=5)  # HealthCheckResponse{status = 1}
        assert answer != bytes([0x08, SERVING]) and answer in (b"", b"\x08\x02"), answer  # NOT_SERVING (2)
    finally:
        chan.close()
    fresh = http.client.HTTPConnection(HOST, server.rest_port, timeout=10)  # a new connection, after the signal
    version, logits = infer_v2(server, "/v2/models/digits/infer")
    assert_close(logits, digits_reference(X[:3]))
    fresh.request("GET", "/v2/health/live")
    assert fresh.getresponse().status == 200
    fresh.close()
    assert server.process.poll() is None, "exited before the drain delay"
    server.send_signal(signal.SIGTERM)  # the second signal: drain now
    started = time.monotonic()
    assert server.wait_exit(STOP_TIMEOUT) == 0, server.describe()
    assert time.monotonic() - started < 2.5


def test_bare_model_file_is_served_as_version_1(server_factory, tmp_path):
    """<base>/model.onnx with no numbered directory (KServe's storage layout,
    /mnt/models/model.onnx) is served as version 1; a numbered directory added later takes
    over as the newer layout."""
    base = tmp_path / "digits"
    base.mkdir()
    (base / "model.onnx").write_bytes(digits_bytes())
    server = server_factory.start(*base_path_args("digits", base))
    status = tf_status(server, "digits")
    assert list(status) == ["1"], status
    assert server.get("/v2/models/digits/versions/1/ready").status_code == 200
    assert_still_serving(server)


def test_directory_without_a_model_is_reported(server_factory, tmp_path):
    """A base path with neither version directories nor model files directly in it is
    reported in the status, naming both layouts."""
    base = tmp_path / "digits"
    base.mkdir()
    (base / "notes.txt").write_text("nothing here")
    server = server_factory.start(*base_path_args("digits", base), wait_ready=False)

    def reported():
        try:
            status = tf_status(server, "digits")
        except Exception:  # not listening yet
            return None
        return status if any("saved_model.pb" in s["status"]["error_message"] for s in status.values()) else None
    wait_until(reported, 10, "the missing model in GET /v1/models/digits")
    assert server.get("/v2/models/digits/ready").status_code != 200


def test_json_log_format(server_factory, tmp_path):
    """--log_format json: every stderr line is one JSON object (time, level, message); a
    version that fails to load is an error line naming the model and version."""
    import datetime
    import json
    base = make_model_dir(tmp_path / "digits", scaled_versions(1))
    server = server_factory.start(*base_path_args("digits", base), "--log_format", "json")
    write_version(base, 2, b"not an ONNX model\n" * 10)
    wait_until(lambda: '"level":"error"' in server.stderr(), 20, "the failed version 2 in the log")
    server.send_signal(signal.SIGTERM)
    assert server.wait_exit(STOP_TIMEOUT) == 0, server.describe()
    lines = [json.loads(line) for line in server.stderr().splitlines() if line.strip()]
    assert lines and all(set(line) == {"time", "level", "message"} for line in lines), lines
    for line in lines:
        datetime.datetime.strptime(line["time"], "%Y-%m-%dT%H:%M:%S.%fZ")
    errors = [line["message"] for line in lines if line["level"] == "error"]
    assert any("digits" in message and "version 2" in message for message in errors), errors
    assert any("stopped" in line["message"] for line in lines), lines
