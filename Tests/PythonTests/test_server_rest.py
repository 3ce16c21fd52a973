"""model-server over REST, happy paths: KServe V1, TF Serving REST and Open Inference
Protocol V2 (JSON and the binary tensor extension), driven with `requests` and real curl;
every result equals onnxruntime's. Also the startup line and /metrics."""
import json
import time

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from server_fixtures import (DIGITS_SAMPLES, assert_close, base_path_args, curl, digits_batch, digits_bytes,
                             digits_reference, make_model_dir, mobilenet_bytes, pair_bytes, reference,
                             v2_binary_request, v2_json_request, v2_output, v2_parse_response)

pytestmark = pytest.mark.timeout(300)

X = digits_batch()  # [10, 1, 8, 8], sample k is digit k


@pytest.fixture(scope="module")
def digits_server(module_server_factory, tmp_path_factory):
    """TF Serving style: --model_name digits --model_base_path <dir with version 1>."""
    base = make_model_dir(tmp_path_factory.mktemp("models") / "digits", {1: digits_bytes()})
    return module_server_factory.start(*base_path_args("digits", base))


@pytest.fixture(scope="module")
def pair_server(module_server_factory, tmp_path_factory):
    """Triton style repository with a two-input, two-output model."""
    repository = tmp_path_factory.mktemp("repository")
    make_model_dir(repository / "pair", {1: pair_bytes()})
    return module_server_factory.start("--model_repository", repository)


@pytest.fixture(scope="module")
def mobilenet_server(module_server_factory, tmp_path_factory, keras_models):
    base = make_model_dir(tmp_path_factory.mktemp("models") / "mobilenet", {1: mobilenet_bytes(keras_models)})
    return module_server_factory.start(*base_path_args("mobilenet", base))


@pytest.fixture(scope="module")
def mobilenet_case(keras_models):
    """(input [1, 224, 224, 3], onnxruntime's predictions) for MobileNetV2."""
    x = np.load(keras_models / "mobilenet_v2" / "input_b1.npy").astype(np.float32)
    return x, reference(mobilenet_bytes(keras_models), {"input": x})["predictions"]


def json_of(response, status=200):
    assert response.status_code == status, f"{response.status_code}: {response.text[:500]}"
    assert response.headers["Content-Type"].startswith("application/json"), response.headers["Content-Type"]
    return response.json()


# --------------------------------------------------------------------------- startup

def test_startup_prints_listening_line(digits_server):
    output = digits_server.stdout() + digits_server.stderr()
    lines = [line for line in output.splitlines() if "listening on" in line]
    assert any(str(digits_server.rest_port) in line for line in lines), output[-2000:]


# --------------------------------------------------------------------------- KServe V1

def test_kserve_v1_liveness(digits_server):
    assert json_of(digits_server.get("/")) == {"status": "alive"}


def test_kserve_v1_lists_models(digits_server):
    assert json_of(digits_server.get("/v1/models")) == {"models": ["digits"]}


def test_v1_model_status_satisfies_kserve_and_tf_serving(digits_server):
    body = json_of(digits_server.get("/v1/models/digits"))
    assert body["name"] == "digits" and body["ready"] is True  # KServe V1
    assert body["model_version_status"] == [  # TF Serving GetModelStatus
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]


def test_kserve_v1_predict_instances(digits_server):
    body = json_of(digits_server.post("/v1/models/digits:predict", json={"instances": X.tolist()}))
    assert_close(body["predictions"], digits_reference(X))
    assert np.argmax(body["predictions"], axis=1).tolist() == list(range(10))


# --------------------------------------------------------------------------- TF Serving REST

def test_tf_status_of_one_version(digits_server):
    body = json_of(digits_server.get("/v1/models/digits/versions/1"))
    assert body["model_version_status"] == [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]


@pytest.mark.parametrize("suffix", ["", "/versions/1"])
def test_tf_metadata(digits_server, suffix):
    body = json_of(digits_server.get(f"/v1/models/digits{suffix}/metadata"))
    assert body["model_spec"]["name"] == "digits"
    assert body["model_spec"]["version"] == "1"
    signature = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["method_name"] == "tensorflow/serving/predict"
    assert set(signature["inputs"]) == {"image"} and set(signature["outputs"]) == {"logits"}
    image, logits = signature["inputs"]["image"], signature["outputs"]["logits"]
    assert image["dtype"] == "DT_FLOAT" and logits["dtype"] == "DT_FLOAT"
    assert [dim["size"] for dim in image["tensor_shape"]["dim"]] == ["-1", "1", "8", "8"]
    assert [dim["size"] for dim in logits["tensor_shape"]["dim"]] == ["-1", "10"]


@pytest.mark.parametrize("path", ["/v1/models/digits:predict", "/v1/models/digits/versions/1:predict"])
def test_tf_predict_row_unnamed(digits_server, path):
    body = json_of(digits_server.post(path, json={"instances": X.tolist()}))
    assert "outputs" not in body
    assert_close(body["predictions"], digits_reference(X))


def test_tf_predict_row_named(digits_server):
    request = {"signature_name": "serving_default", "instances": [{"image": row.tolist()} for row in X]}
    body = json_of(digits_server.post("/v1/models/digits:predict", json=request))
    # one output: a list of per-row values, not objects
    assert_close(body["predictions"], digits_reference(X))


def test_tf_predict_columnar_unnamed(digits_server):
    body = json_of(digits_server.post("/v1/models/digits:predict", json={"inputs": X[:3].tolist()}))
    assert_close(body["outputs"], digits_reference(X[:3]))


def test_tf_predict_columnar_named(digits_server):
    body = json_of(digits_server.post("/v1/models/digits:predict", json={"inputs": {"image": X[:3].tolist()}}))
    assert_close(body["outputs"], digits_reference(X[:3]))  # one output: the bare tensor


def test_tf_predict_single_row(digits_server):
    body = json_of(digits_server.post("/v1/models/digits:predict", json={"instances": [X[4].tolist()]}))
    assert len(body["predictions"]) == 1
    assert_close(body["predictions"], digits_reference(X[4:5]))


def _pair_inputs():
    a = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=np.float32)
    b = np.array([[0.5, -1.0, 10.0], [1.0, 1.0, 1.0]], dtype=np.float32)
    return a, b


def test_tf_predict_multi_input_rows(pair_server):
    """Named rows in; several outputs -> one object per row keyed by output name."""
    a, b = _pair_inputs()
    request = {"instances": [{"a": a[i].tolist(), "b": b[i].tolist()} for i in range(2)]}
    body = json_of(pair_server.post("/v1/models/pair:predict", json=request))
    assert len(body["predictions"]) == 2
    for i, row in enumerate(body["predictions"]):
        assert set(row) == {"sum", "diff"}
        assert_close(row["sum"], a[i] + b[i])
        assert_close(row["diff"], a[i] - b[i])


def test_tf_predict_multi_input_columnar(pair_server):
    """Columnar object in; several outputs -> {"outputs": {name: full tensor}}."""
    a, b = _pair_inputs()
    body = json_of(pair_server.post("/v1/models/pair:predict", json={"inputs": {"a": a.tolist(), "b": b.tolist()}}))
    assert set(body["outputs"]) == {"sum", "diff"}
    assert_close(body["outputs"]["sum"], a + b)
    assert_close(body["outputs"]["diff"], a - b)


def test_v2_multi_input_infer(pair_server):
    a, b = _pair_inputs()
    request = {"inputs": [{"name": "a", "shape": [2, 3], "datatype": "FP32", "data": a.ravel().tolist()},
                          {"name": "b", "shape": [2, 3], "datatype": "FP32", "data": b.tolist()}],
               "outputs": [{"name": "diff"}]}
    body = json_of(pair_server.post("/v2/models/pair/infer", json=request))
    assert [output["name"] for output in body["outputs"]] == ["diff"]  # only what was asked for
    assert_close(v2_output(body, "diff"), a - b)


def test_tf_predict_mobilenet(mobilenet_server, mobilenet_case):
    x, expected = mobilenet_case
    body = json_of(mobilenet_server.post("/v1/models/mobilenet:predict", json={"instances": x.tolist()}))
    assert_close(body["predictions"], expected)


# --------------------------------------------------------------------------- V2 health and metadata

def test_v2_server_metadata(digits_server):
    body = json_of(digits_server.get("/v2"))
    assert isinstance(body["name"], str) and body["name"]
    assert isinstance(body["version"], str) and body["version"]
    assert {"binary_tensor_data", "model_repository"} <= set(body["extensions"])


@pytest.mark.parametrize("path, key", [("/v2/health/live", "live"), ("/v2/health/ready", "ready")])
def test_v2_health(digits_server, path, key):
    assert json_of(digits_server.get(path)) == {key: True}  # KServe's client reads the JSON key


@pytest.mark.parametrize("path", ["/v2/models/digits", "/v2/models/digits/versions/1"])
def test_v2_model_metadata(digits_server, path):
    body = json_of(digits_server.get(path))
    assert body["name"] == "digits"
    assert "1" in body["versions"]
    assert isinstance(body["platform"], str)
    tensors = lambda key: [{k: t[k] for k in ("name", "datatype", "shape")} for t in body[key]]
    assert tensors("inputs") == [{"name": "image", "datatype": "FP32", "shape": [-1, 1, 8, 8]}]
    assert tensors("outputs") == [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}]


@pytest.mark.parametrize("path", ["/v2/models/digits/ready", "/v2/models/digits/versions/1/ready"])
def test_v2_model_ready(digits_server, path):
    assert digits_server.get(path).status_code == 200


# --------------------------------------------------------------------------- V2 infer, JSON

@pytest.mark.parametrize("flat", [False, True], ids=["nested", "flat"])
@pytest.mark.parametrize("path", ["/v2/models/digits/infer", "/v2/models/digits/versions/1/infer"])
def test_v2_infer_json(digits_server, path, flat):
    body = json_of(digits_server.post(path, json=v2_json_request(X, flat=flat, request_id="req-42")))
    assert body["model_name"] == "digits"
    assert body["model_version"] == "1"
    assert body["id"] == "req-42"
    [output] = body["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("logits", "FP32", [10, 10])
    assert_close(v2_output(body, "logits"), digits_reference(X))


def test_v2_infer_json_requested_output_and_unknown_parameters(digits_server):
    request = v2_json_request(X[:2], outputs=[{"name": "logits", "parameters": {"binary_data": False}}],
                              parameters={"priority": 0, "custom_thing": "ignored"})
    response = digits_server.post("/v2/models/digits/infer", json=request)
    body = json_of(response)
    assert "Inference-Header-Content-Length" not in response.headers
    assert_close(v2_output(body, "logits"), digits_reference(X[:2]))


# --------------------------------------------------------------------------- V2 infer, binary extension

def _post_binary(server, path, body, json_length):
    return server.post(path, data=body, headers={"Inference-Header-Content-Length": str(json_length),
                                                 "Content-Type": "application/octet-stream"})


def test_v2_infer_binary_in_binary_out(digits_server):
    body, json_length = v2_binary_request([("image", X)], outputs=[{"name": "logits",
                                                                    "parameters": {"binary_data": True}}])
    response = _post_binary(digits_server, "/v2/models/digits/infer", body, json_length)
    assert response.status_code == 200, response.text[:500]
    assert response.headers["Content-Type"] == "application/octet-stream"
    document, arrays = v2_parse_response(response.content, response.headers)
    [output] = document["outputs"]
    assert output["parameters"]["binary_data_size"] == 10 * 10 * 4
    assert "data" not in output
    assert_close(arrays["logits"], digits_reference(X))


def test_v2_infer_binary_data_output_parameter(digits_server):
    """Top-level binary_data_output applies to every output when none are listed."""
    body, json_length = v2_binary_request([("image", X[:4])], parameters={"binary_data_output": True})
    response = _post_binary(digits_server, "/v2/models/digits/infer", body, json_length)
    assert response.status_code == 200, response.text[:500]
    document, arrays = v2_parse_response(response.content, response.headers)
    assert document["outputs"][0]["parameters"]["binary_data_size"] == 4 * 10 * 4
    assert_close(arrays["logits"], digits_reference(X[:4]))


def test_v2_infer_binary_in_json_out(digits_server):
    body, json_length = v2_binary_request([("image", X[:3])])
    response = _post_binary(digits_server, "/v2/models/digits/infer", body, json_length)
    document = json_of(response)
    assert "Inference-Header-Content-Length" not in response.headers
    assert_close(v2_output(document, "logits"), digits_reference(X[:3]))


def test_v2_infer_json_in_binary_out(digits_server):
    request = v2_json_request(X[:3], outputs=[{"name": "logits", "parameters": {"binary_data": True}}])
    response = digits_server.post("/v2/models/digits/infer", json=request)
    assert response.status_code == 200, response.text[:500]
    _, arrays = v2_parse_response(response.content, response.headers)
    assert_close(arrays["logits"], digits_reference(X[:3]))


def test_v2_infer_binary_mobilenet_batch4(mobilenet_server, keras_models):
    x = np.load(keras_models / "mobilenet_v2" / "input_b4.npy").astype(np.float32)
    expected = reference(mobilenet_bytes(keras_models), {"input": x})["predictions"]
    body, json_length = v2_binary_request([("input", x)], parameters={"binary_data_output": True})
    response = _post_binary(mobilenet_server, "/v2/models/mobilenet/infer", body, json_length)
    assert response.status_code == 200, response.text[:500]
    document, arrays = v2_parse_response(response.content, response.headers)
    assert document["model_name"] == "mobilenet" and document["outputs"][0]["shape"] == [4, 1000]
    assert_close(arrays["predictions"], expected)


# --------------------------------------------------------------------------- V2 repository extension

def test_v2_repository_index(digits_server):
    entries = json_of(digits_server.post("/v2/repository/index"))
    assert isinstance(entries, list)
    digits = [entry for entry in entries if entry["name"] == "digits"]
    assert digits and all(entry["state"] == "READY" for entry in digits), entries
    assert {entry.get("version", "1") for entry in digits} == {"1"}
    ready_only = json_of(digits_server.post("/v2/repository/index", json={"ready": True}))
    assert [entry["name"] for entry in ready_only if entry["name"] == "digits"]


# --------------------------------------------------------------------------- curl

def test_curl_kserve_v1_and_tf_predict(digits_server, tmp_path):
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"instances": X[:2].tolist()}))
    result = curl(digits_server, "/v1/models/digits:predict", "-H", "Content-Type: application/json",
                  "--data-binary", f"@{request}")
    assert result.status == 200, result.body
    assert_close(result.json()["predictions"], digits_reference(X[:2]))


def test_curl_status_metadata_and_liveness(digits_server):
    assert curl(digits_server, "/").json() == {"status": "alive"}
    status = curl(digits_server, "/v1/models/digits")
    assert status.status == 200 and status.json()["model_version_status"][0]["state"] == "AVAILABLE"
    metadata = curl(digits_server, "/v2/models/digits")
    assert metadata.status == 200 and metadata.json()["name"] == "digits"
    assert curl(digits_server, "/v2/health/ready").status == 200


def test_curl_v2_infer_json(digits_server, tmp_path):
    request = tmp_path / "request.json"
    request.write_text(json.dumps(v2_json_request(X, flat=True)))
    result = curl(digits_server, "/v2/models/digits/infer", "-H", "Content-Type: application/json",
                  "--data-binary", f"@{request}")
    assert result.status == 200, result.body
    assert_close(v2_output(result.json(), "logits"), digits_reference(X))


def test_curl_v2_binary_big_body_sends_expect_100_continue(mobilenet_server, keras_models, tmp_path):
    """A 2.4 MB binary body (batch 4): curl 7.88 adds Expect: 100-continue by itself for
    bodies over 1 MiB and waits for the interim 100 before sending the body."""
    x = np.load(keras_models / "mobilenet_v2" / "input_b4.npy").astype(np.float32)
    expected = reference(mobilenet_bytes(keras_models), {"input": x})["predictions"]
    body, json_length = v2_binary_request([("input", x)], outputs=[{"name": "predictions",
                                                                    "parameters": {"binary_data": True}}])
    assert len(body) > 1024 * 1024
    request = tmp_path / "request.bin"
    request.write_bytes(body)
    result = curl(mobilenet_server, "/v2/models/mobilenet/infer",
                  "-H", f"Inference-Header-Content-Length: {json_length}",
                  "-H", "Content-Type: application/octet-stream", "--expect100-timeout", "30",
                  "--data-binary", f"@{request}")
    assert "> Expect: 100-continue" in result.verbose, result.verbose
    assert "< HTTP/1.1 100 Continue" in result.verbose, result.verbose
    assert result.status == 200, result.body[:500]
    headers = dict(line[2:].split(": ", 1) for line in result.verbose.splitlines()
                   if line.startswith("< ") and ": " in line)
    headers = {name.title(): value.strip() for name, value in headers.items()}
    assert headers["Content-Type"] == "application/octet-stream"
    _, arrays = v2_parse_response(result.body, headers)
    assert_close(arrays["predictions"], expected)


# --------------------------------------------------------------------------- metrics

def _scrape(server):
    response = server.get("/metrics")
    assert response.status_code == 200, response.text[:500]
    assert response.headers["Content-Type"].startswith("text/plain"), response.headers["Content-Type"]
    return list(text_string_to_metric_families(response.text))


def _samples(families, kind, suffix=""):
    return [(family.name, sample) for family in families if family.type == kind
            for sample in family.samples if sample.name.endswith(suffix)]


def test_metrics_count_requests_by_model_version_protocol_outcome(server_factory, tmp_path):
    base = make_model_dir(tmp_path / "digits", {1: digits_bytes()})
    server = server_factory.start(*base_path_args("digits", base))
    before = _scrape(server)
    x = np.load(DIGITS_SAMPLES / "digit_3.npy").astype(np.float32)
    for _ in range(3):  # V2: 3 successes
        assert server.post("/v2/models/digits/infer", json=v2_json_request(x)).status_code == 200
    for _ in range(2):  # V1 / TF Serving REST: 2 successes
        assert server.post("/v1/models/digits:predict", json={"instances": x.tolist()}).status_code == 200
    wrong = {"inputs": [{"name": "image", "shape": [1, 1, 8, 7], "datatype": "FP32", "data": [0.0] * 56}]}
    assert server.post("/v2/models/digits/infer", json=wrong).status_code == 400  # V2: 1 error
    after = _scrape(server)

    label_set = {"model", "version", "protocol", "outcome"}
    counters = [family for family in after if family.type == "counter" and
                any(label_set <= set(sample.labels) for sample in family.samples)]
    assert counters, "no counter labelled model/version/protocol/outcome in /metrics"
    old = {(family.name, sample.name, tuple(sorted(sample.labels.items()))): sample.value
           for family in before for sample in family.samples}
    deltas = [(sample.labels, sample.value - old.get((family.name, sample.name, tuple(sorted(sample.labels.items()))),
                                                      0.0))
              for family in counters[:1] for sample in family.samples
              if sample.labels.get("model") == "digits" and not sample.name.endswith("_created")]
    deltas = [(labels, delta) for labels, delta in deltas if delta]
    assert sum(delta for _, delta in deltas) == 6, deltas
    by_outcome, by_protocol = {}, {}
    for labels, delta in deltas:
        by_outcome[labels["outcome"]] = by_outcome.get(labels["outcome"], 0) + delta
        by_protocol[labels["protocol"]] = by_protocol.get(labels["protocol"], 0) + delta
    assert sorted(by_outcome.values()) == [1, 5], by_outcome
    assert 4 in by_protocol.values() and len(by_protocol) >= 2, by_protocol
    success = max(by_outcome, key=by_outcome.get)
    assert {labels["version"] for labels, _ in deltas if labels["outcome"] == success} == {"1"}

    histograms = [family for family in after if family.type == "histogram" and
                  any(sample.labels.get("model") == "digits" for sample in family.samples)]
    assert histograms, "no latency histogram labelled with the model"
    series = {}
    for sample in histograms[0].samples:
        if sample.labels.get("model") != "digits":
            continue
        key = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
        series.setdefault(key, {"buckets": []})
        if sample.name.endswith("_bucket"):
            series[key]["buckets"].append((float(sample.labels["le"]), sample.value))
        elif sample.name.endswith("_count"):
            series[key]["count"] = sample.value
    assert sum(entry.get("count", 0) for entry in series.values()) >= 5, series
    for entry in series.values():
        buckets = sorted(entry["buckets"])
        assert len(buckets) >= 2 and buckets[-1][0] == float("inf"), buckets
        assert [count for _, count in buckets] == sorted(count for _, count in buckets), buckets
        assert buckets[-1][1] == entry["count"], entry

    gauges = {family.name: family for family in after if family.type == "gauge"}
    loaded = [family for name, family in gauges.items() if "loaded" in name]
    assert loaded and sum(sample.value for sample in loaded[0].samples) >= 1, sorted(gauges)
    in_flight = [family for name, family in gauges.items() if "flight" in name]
    assert in_flight and all(sample.value >= 0 for sample in in_flight[0].samples), sorted(gauges)


def test_metrics_versions_preprocess_queue_and_process(server_factory, tmp_path):
    """Latency histograms carry the version; JPEG requests record a preprocess phase; every
    loaded version has a queue-size gauge; the standard process_* figures match /proc."""
    import os
    import shutil
    root = tmp_path / "digits"
    shutil.copytree(DIGITS_SAMPLES.parent, root)
    server = server_factory.start("--model_name", "digits", "--model_base_path", str(root))
    image = (DIGITS_SAMPLES / "digit_3.jpg").read_bytes()
    for _ in range(5):
        response = server.post("/v1/models/digits:predict", data=image, headers={"Content-Type": "image/jpeg"})
        assert response.status_code == 200, response.text
    families = {family.name: family for family in _scrape(server)}
    durations = families["model_server_request_duration_seconds"]
    counts = {(s.labels["version"], s.labels["phase"]): s.value for s in durations.samples
              if s.name.endswith("_count") and s.labels["model"] == "digits"}
    assert counts[("1", "preprocess")] == 5 and counts[("1", "total")] == 5, counts
    queue = [s for s in families["model_server_queue_size"].samples if s.labels == {"model": "digits", "version": "1"}]
    assert len(queue) == 1 and queue[0].value == 0, families["model_server_queue_size"].samples
    rss = families["process_resident_memory_bytes"].samples[0].value
    status_rss = int(next(line for line in open(f"/proc/{server.process.pid}/status") if line.startswith("VmRSS")).split()[1]) * 1024
    assert abs(rss - status_rss) < 0.2 * status_rss, (rss, status_rss)
    fds = families["process_open_fds"].samples[0].value
    assert abs(fds - len(os.listdir(f"/proc/{server.process.pid}/fd"))) <= 4, fds
    assert families["process_cpu_seconds"].samples[0].value > 0
    assert abs(families["process_start_time_seconds"].samples[0].value - time.time()) < 600


def test_metrics_drop_latency_series_of_unloaded_versions(server_factory, tmp_path):
    """Latency series are per version; an unloaded version's go away (cardinality follows the
    loaded versions) and its queue gauge with it."""
    repository = tmp_path / "repository"
    make_model_dir(repository / "digits", {1: digits_bytes()})
    server = server_factory.start("--model_repository", str(repository))
    x = np.load(DIGITS_SAMPLES / "digit_3.npy").astype(np.float32)
    assert server.post("/v2/models/digits/infer", json=v2_json_request(x)).status_code == 200
    text = server.get("/metrics").text
    assert 'model_server_request_duration_seconds_count{model="digits",version="1",phase="total"} 1' in text, text
    assert 'model_server_queue_size{model="digits",version="1"} 0' in text
    assert server.post("/v2/repository/models/digits/unload").status_code == 200
    text = server.get("/metrics").text
    assert 'request_duration_seconds_count{model="digits"' not in text and 'queue_size{model="digits"' not in text, text
    assert "model_server_loaded_versions 0" in text
