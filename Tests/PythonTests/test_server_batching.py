"""Dynamic batching end to end: under concurrent load every response belongs to its
request, batches larger than one actually run, and a full queue answers 503 with
Retry-After while the server keeps serving."""
import concurrent.futures
import json
import time

import numpy as np

from grpc_helpers import batch_sizes, calibrate_slow, in_flight
from server_fixtures import (assert_close, assert_still_serving, digits_bytes, digits_reference, make_model_dir,
                             mobilenet_bytes, reference, slow_bytes, v2_binary_request,
                             wait_until, v2_json_request, v2_output, v2_parse_response)


def long_request_rows(infer_seconds):
    """Rows of a slow-model request lasting >= 0.5 s; infer_seconds(rows) sends one and times it."""
    return calibrate_slow(infer_seconds, target=0.5, start=16)[0]


def behind_long_request(server, infer_seconds, long_rows, call, inputs):
    """Runs call(x) for every x of `inputs` from 16 threads while infer_seconds(long_rows)
    holds the server's one compute thread: the calls queue behind it instead of each finding
    an idle model. Returns the calls' results in order."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=17) as pool:
        busy = pool.submit(infer_seconds, long_rows)
        wait_until(lambda: in_flight(server) >= 1, 10, "the long request is in flight", interval=0.01)
        time.sleep(0.1)  # decoded and computing
        results = list(pool.map(call, inputs))
        busy.result()
    return results


def test_concurrent_requests_are_batched_and_answered_correctly(server_factory, tmp_path):
    repository = tmp_path / "repo"
    make_model_dir(repository / "digits", {1: digits_bytes()})
    (repository / "digits" / "config.pbtxt").write_text(
        'max_batch_size: 16\ndynamic_batching { max_queue_delay_microseconds: 3000 }\n')
    make_model_dir(repository / "slow", {1: slow_bytes()})
    server = server_factory.start("--model_repository", str(repository), "--compute_threads", "1")
    rng = np.random.default_rng(7)
    inputs = [rng.uniform(0, 1, [1 + i % 3, 1, 8, 8]).astype(np.float32) for i in range(240)]

    def one(x):
        response = server.post("/v2/models/digits/infer", json=v2_json_request(x))
        assert response.status_code == 200, response.text
        return v2_output(response.json(), "logits")

    def slow_seconds(rows):
        started = time.monotonic()
        x = np.random.default_rng(0).standard_normal((rows, 1024)).astype(np.float32)
        response = server.post("/v2/models/slow/infer", json=v2_json_request(x, name="x"), timeout=120)
        assert response.status_code == 200, response.text
        return time.monotonic() - started

    # The digits model runs in microseconds: its requests combine only while they queue
    # behind a long request of another model on the one shared compute thread.
    results = behind_long_request(server, slow_seconds, long_request_rows(slow_seconds), one, inputs)
    for x, result in zip(inputs, results):
        assert_close(np.asarray(result).reshape(x.shape[0], 10), digits_reference(x))
    sizes = batch_sizes(server, "digits")
    assert sum(size * count for size, count in sizes.items()) == sum(x.shape[0] for x in inputs), sizes
    assert max(sizes) <= 16, sizes
    assert max(sizes) > 3, f"no batch combined several requests: {sizes}"


def test_batching_off_runs_requests_alone(server_factory, tmp_path):
    base = make_model_dir(tmp_path / "digits", {1: digits_bytes()})
    server = server_factory.start("--model_name", "digits", "--model_base_path", str(base))
    x = np.random.default_rng(1).uniform(0, 1, [2, 1, 8, 8]).astype(np.float32)
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda _: server.post("/v2/models/digits/infer", json=v2_json_request(x)).raise_for_status(), range(64)))
    assert set(batch_sizes(server, "digits")) == {2}


def test_tf_serving_batching_parameters_file(server_factory, tmp_path):
    """batching_parameters_file bounds the batches: while one long request keeps the only
    compute thread busy, 16 single-row requests queue up and then run in batches of at most
    max_batch_size, each answered with its own result."""
    model = slow_bytes()
    base = make_model_dir(tmp_path / "slow", {1: model})
    parameters = tmp_path / "batching.txt"
    parameters.write_text("max_batch_size { value: 8 }\nbatch_timeout_micros { value: 5000 }\n"
                          "max_enqueued_batches { value: 100 }\nallowed_batch_sizes: 4\nallowed_batch_sizes: 8\n")
    server = server_factory.start("--model_name", "slow", "--model_base_path", str(base), "--enable_batching",
                                  "--batching_parameters_file", str(parameters), "--compute_threads", "1")

    def predict(x):
        response = server.post("/v1/models/slow:predict", json={"inputs": {"x": x.tolist()}}, timeout=120)
        assert response.status_code == 200, response.text
        return response.json()["outputs"]

    def infer_seconds(rows):
        started = time.monotonic()
        predict(np.random.default_rng(0).standard_normal((rows, 1024)).astype(np.float32))
        return time.monotonic() - started

    # The long request is larger than max_batch_size, so it runs alone.
    long_rows = long_request_rows(infer_seconds)
    before = batch_sizes(server, "slow")
    singles = [np.random.default_rng(10 + i).standard_normal((1, 1024)).astype(np.float32) for i in range(16)]
    results = behind_long_request(server, infer_seconds, long_rows, predict, singles)
    for x, result in zip(singles, results):
        np.testing.assert_allclose(result["y"], reference(model, {"x": x})["y"], atol=1e-3, rtol=1e-3)
    after = batch_sizes(server, "slow")
    added = {size: after.get(size, 0) - before.get(size, 0) for size in after if after.get(size, 0) > before.get(size, 0)}
    added[long_rows] -= 1  # the long request's own batch
    small = {size: count for size, count in added.items() if count > 0}
    assert sum(size * count for size, count in small.items()) == 16, (added, long_rows)
    assert max(small) <= 8, small
    assert sum(small.values()) < 16, f"no batch combined the queued requests: {small}"


def test_full_queue_answers_503_with_retry_after(server_factory, tmp_path, keras_models):
    repository = tmp_path / "repo"
    model = mobilenet_bytes(keras_models)
    make_model_dir(repository / "mobilenet", {1: model})
    (repository / "mobilenet" / "config.pbtxt").write_text(
        'max_batch_size: 2\ndynamic_batching { default_queue_policy { max_queue_size: 1 } }\n')
    server = server_factory.start("--model_repository", str(repository), "--compute_threads", "1")
    x = np.load(keras_models / "mobilenet_v2" / "input_b1.npy")
    body, json_length = v2_binary_request([("input", x)])
    headers = {"Inference-Header-Content-Length": str(json_length), "Content-Type": "application/octet-stream"}

    def one(_):
        return server.post("/v2/models/mobilenet/infer", data=body, headers=headers)

    with concurrent.futures.ThreadPoolExecutor(max_workers=24) as pool:
        responses = list(pool.map(one, range(48)))
    statuses = [response.status_code for response in responses]
    assert set(statuses) <= {200, 503}, statuses
    assert 503 in statuses and 200 in statuses, statuses
    expected = reference(model, {"input": x})["predictions"]
    for response in responses:
        if response.status_code == 503:
            assert response.headers.get("Retry-After") == "1"
            assert "queue" in response.json()["error"]
        else:
            _, outputs = v2_parse_response(response.content, response.headers)
            assert_close(outputs["predictions"], expected)
    assert 'model_server_queue_rejected_total{model="mobilenet"}' in server.get("/metrics").text
    assert server.post("/v2/models/mobilenet/infer", data=body, headers=headers).status_code == 200


def test_huge_shapes_are_refused_not_trapped(server_factory, tmp_path):
    """Shapes whose element count overflows must get a 400, and the server keeps serving."""
    base = make_model_dir(tmp_path / "digits", {1: digits_bytes()})
    server = server_factory.start("--model_name", "digits", "--model_base_path", str(base))
    for shape in ([4294967296, 4294967296, 1, 8], [2305843009213693952, 4, 1, 1], [4611686018427387904, 1, 8, 8]):
        body = {"inputs": [{"name": "image", "shape": shape, "datatype": "FP32", "data": [1, 2, 3, 4]}]}
        response = server.post("/v2/models/digits/infer", json=body)
        assert response.status_code == 400, response.text
    header = json.dumps({"inputs": [{"name": "image", "shape": [4611686018427387904, 1, 8, 8], "datatype": "FP32",
                                     "parameters": {"binary_data_size": 4}}]}).encode()
    response = server.post("/v2/models/digits/infer", data=header + b"\0\0\0\0",
                           headers={"Inference-Header-Content-Length": str(len(header))})
    assert response.status_code == 400, response.text
    assert server.get("/v2/health/live").status_code == 200
