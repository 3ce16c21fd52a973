"""model-server protocol errors: each gets its documented HTTP status and a JSON
{"error": "<message>"} body, and the server keeps serving afterwards (checked after
every test). Statuses follow TF Serving's code mapping (protocols.md 2.7) on /v1 and
Triton/KServe on /v2: unknown model or version 404, bad request 400, wrong verb 405."""
import json

import pytest

from server_fixtures import (DIGITS_SAMPLES, assert_error, assert_still_serving, digits_batch, digits_bytes,
                             make_model_dir, pair_bytes, v2_binary_request, v2_json_request)

pytestmark = pytest.mark.timeout(300)

X = digits_batch()
ROW = X[0].tolist()  # one instance, [1, 8, 8]


@pytest.fixture(scope="module")
def server(module_server_factory, tmp_path_factory):
    repository = tmp_path_factory.mktemp("repository")
    make_model_dir(repository / "digits", {1: digits_bytes()})
    make_model_dir(repository / "pair", {1: pair_bytes()})
    return module_server_factory.start("--model_repository", repository)


@pytest.fixture(autouse=True)
def still_serving_afterwards(server):
    yield
    assert_still_serving(server)


# --------------------------------------------------------------------------- unknown model / version

@pytest.mark.parametrize("method, path", [
    ("GET", "/v1/models/no_such_model"),
    ("GET", "/v1/models/no_such_model/metadata"),
    ("POST", "/v1/models/no_such_model:predict"),
    ("GET", "/v2/models/no_such_model"),
    ("GET", "/v2/models/no_such_model/ready"),
    ("POST", "/v2/models/no_such_model/infer"),
])
def test_unknown_model_is_404(server, method, path):
    body = {"instances": [ROW]} if path.endswith(":predict") else v2_json_request(X[:1])
    response = server.request(method, path, json=body if method == "POST" else None)
    assert_error(response, 404, "no_such_model")


@pytest.mark.parametrize("method, path", [
    ("GET", "/v1/models/digits/versions/9"),
    ("GET", "/v1/models/digits/versions/9/metadata"),
    ("POST", "/v1/models/digits/versions/9:predict"),
    ("GET", "/v2/models/digits/versions/9"),
    ("GET", "/v2/models/digits/versions/9/ready"),
    ("POST", "/v2/models/digits/versions/9/infer"),
])
def test_unknown_version_is_404(server, method, path):
    body = {"instances": [ROW]} if path.endswith(":predict") else v2_json_request(X[:1])
    response = server.request(method, path, json=body if method == "POST" else None)
    assert_error(response, 404, "9")


def test_unknown_version_label_is_400(server):
    """TF Serving: INVALID_ARGUMENT 'Unrecognized servable version label: <l>'."""
    assert_error(server.get("/v1/models/digits/labels/no_such_label"), 400, "no_such_label")
    assert_error(server.post("/v1/models/digits/labels/no_such_label:predict", json={"instances": [ROW]}), 400,
                 "no_such_label")


def test_unknown_v2_route_is_404(server):
    assert_error(server.get("/v2/no/such/route"), 404)


def test_wrong_verb_on_v2_is_405(server):
    assert_error(server.request("PUT", "/v2/models/digits/infer", json=v2_json_request(X[:1])), 405)
    assert_error(server.request("DELETE", "/v2/models/digits"), 405)


@pytest.mark.parametrize("method, path, allow", [
    ("PUT", "/v2/models/digits/infer", "POST"), ("GET", "/v1/models/digits:predict", "POST"),
    ("DELETE", "/v2/models/digits", "GET, HEAD"), ("POST", "/v1/models/digits", "GET, HEAD"),
    ("GET", "/v2/repository/index", "POST")])
def test_405_names_the_allowed_methods(server, method, path, allow):
    """RFC 9110 15.5.6: a 405 carries Allow."""
    response = server.request(method, path)
    assert_error(response, 405)
    assert response.headers.get("Allow") == allow, response.headers


# --------------------------------------------------------------------------- repository extension

@pytest.mark.parametrize("parameters", [{"config": '{"max_batch_size": 1}'}, {"file:1/model.onnx": "AAAA"}])
def test_repository_load_overrides_are_refused(server, parameters):
    """This server loads models from disk only: Triton's config / file overrides are refused
    with 400 naming the parameter, not answered 200 and ignored."""
    name = next(iter(parameters))
    response = server.post("/v2/repository/models/pair/load", json={"parameters": parameters})
    assert_error(response, 400, name)
    assert server.get("/v2/models/pair/ready").status_code == 200


@pytest.mark.parametrize("path, body", [
    *[("/v2/repository/models/pair/load", body) for body in (b"garbage", b"[1]", b'{"parameters": 3}')],
    *[("/v2/repository/index", body) for body in (b"garbage", b"[1]", b'{"ready": "yes"}')]])
def test_repository_malformed_body_is_400(server, path, body):
    assert_error(server.post(path, data=body, headers={"Content-Type": "application/json"}), 400)


def test_repository_empty_bodies_are_accepted(server):
    assert server.post("/v2/repository/index").status_code == 200
    assert server.post("/v2/repository/index", json={"ready": True}).status_code == 200
    assert server.post("/v2/repository/models/pair/load").status_code == 200
    assert server.post("/v2/repository/models/pair/load", json={}).status_code == 200


# --------------------------------------------------------------------------- malformed bodies

@pytest.mark.parametrize("path", ["/v1/models/digits:predict", "/v2/models/digits/infer"])
@pytest.mark.parametrize("body", [b'{"instances": [1, 2', b"not json at all", b"", b'{"a": 1,}'],
                         ids=["truncated", "garbage", "empty", "trailing-comma"])
def test_bad_json_is_400(server, path, body):
    assert_error(server.post(path, data=body, headers={"Content-Type": "application/json"}), 400)


@pytest.mark.parametrize("path", ["/v1/models/digits:predict", "/v2/models/digits/infer"])
def test_json_not_an_object_is_400(server, path):
    assert_error(server.post(path, json=[1, 2, 3]), 400)


def test_tf_missing_instances_and_inputs_is_400(server):
    assert_error(server.post("/v1/models/digits:predict", json={"signature_name": "serving_default"}), 400,
                 "inputs", "instances")


def test_tf_both_instances_and_inputs_is_400(server):
    assert_error(server.post("/v1/models/digits:predict", json={"instances": [ROW], "inputs": [ROW]}), 400)


def test_tf_empty_instances_is_400(server):
    assert_error(server.post("/v1/models/digits:predict", json={"instances": []}), 400)


def test_tf_unknown_signature_is_400(server):
    request = {"signature_name": "no_such_signature", "instances": [ROW]}
    assert_error(server.post("/v1/models/digits:predict", json=request), 400, "no_such_signature")


def test_tf_signature_name_not_a_string_is_400(server):
    assert_error(server.post("/v1/models/digits:predict", json={"signature_name": 100, "instances": [ROW]}), 400)


# --------------------------------------------------------------------------- wrong shape

@pytest.mark.parametrize("instances", [
    [X[0, 0].tolist()],  # [8, 8] rows: rank 3 tensor for a rank 4 input
    [[[[0.0] * 7] * 8]],  # [1, 8, 7]
    [ROW, [[[0.0] * 8] * 7]],  # rows of different shapes
    [[[[0.0] * 8] * 7 + [[0.0] * 9]]],  # ragged innermost lists
], ids=["rank", "dim", "rows-differ", "ragged"])
def test_tf_wrong_shape_is_400(server, instances):
    assert_error(server.post("/v1/models/digits:predict", json={"instances": instances}), 400)


@pytest.mark.parametrize("shape, count", [([1, 1, 8, 7], 56), ([1, 64], 64), ([1, 1, 8, 8], 63), ([1, 1, 8, 8], 65)],
                         ids=["dim", "rank", "too-few-values", "too-many-values"])
def test_v2_wrong_shape_is_400(server, shape, count):
    request = {"inputs": [{"name": "image", "shape": shape, "datatype": "FP32", "data": [0.5] * count}]}
    assert_error(server.post("/v2/models/digits/infer", json=request), 400)


def test_v2_negative_shape_is_400(server):
    request = {"inputs": [{"name": "image", "shape": [-1, 1, 8, 8], "datatype": "FP32", "data": [0.5] * 64}]}
    assert_error(server.post("/v2/models/digits/infer", json=request), 400)


# --------------------------------------------------------------------------- wrong datatype

@pytest.mark.parametrize("datatype", ["INT32", "FP64", "BYTES", "FP99"])
def test_v2_wrong_datatype_is_400(server, datatype):
    request = {"inputs": [{"name": "image", "shape": [1, 1, 8, 8], "datatype": datatype, "data": [1] * 64}]}
    assert_error(server.post("/v2/models/digits/infer", json=request), 400)


def test_v2_non_numeric_data_is_400(server):
    request = {"inputs": [{"name": "image", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": ["x"] * 64}]}
    assert_error(server.post("/v2/models/digits/infer", json=request), 400)


@pytest.mark.parametrize("value", ["0.5", True, None, {"b64": "AAAAAA=="}], ids=["string", "bool", "null", "b64"])
def test_tf_wrong_json_type_for_float_input_is_400(server, value):
    """dtype comes from the signature: a DT_FLOAT input takes numbers only ({"b64"} is for DT_STRING)."""
    instance = [[[value] * 8] * 8] if not isinstance(value, dict) else value
    assert_error(server.post("/v1/models/digits:predict", json={"instances": [instance]}), 400)


# --------------------------------------------------------------------------- missing / unknown inputs and outputs

def test_v2_no_inputs_is_400(server):
    assert_error(server.post("/v2/models/digits/infer", json={"inputs": []}), 400)
    assert_error(server.post("/v2/models/digits/infer", json={"id": "x"}), 400)


def test_v2_unknown_input_name_is_400(server):
    message = assert_error(server.post("/v2/models/digits/infer", json=v2_json_request(X[:1], name="no_such_input")),
                           400)
    assert "no_such_input" in message or "image" in message, message  # names the stray or the missing input


def test_v2_input_given_twice_is_400(server):
    one = v2_json_request(X[:1])["inputs"][0]
    message = assert_error(server.post("/v2/models/digits/infer", json={"inputs": [one, one]}), 400)
    assert "image" in message and "more than once" in message, message


def test_v2_missing_one_of_two_inputs_is_400(server):
    request = {"inputs": [{"name": "a", "shape": [1, 3], "datatype": "FP32", "data": [1.0, 2.0, 3.0]}]}
    assert_error(server.post("/v2/models/pair/infer", json=request), 400, "b")


def test_v2_unknown_requested_output_is_400(server):
    request = v2_json_request(X[:1], outputs=[{"name": "no_such_output"}])
    assert_error(server.post("/v2/models/digits/infer", json=request), 400, "no_such_output")


def test_tf_unnamed_rows_for_two_inputs_is_400(server):
    assert_error(server.post("/v1/models/pair:predict", json={"instances": [[1.0, 2.0, 3.0]]}), 400)


def test_tf_named_row_missing_input_is_400(server):
    assert_error(server.post("/v1/models/pair:predict", json={"instances": [{"a": [1.0, 2.0, 3.0]}]}), 400)


def test_tf_named_row_extra_key_is_400(server):
    row = {"a": [1.0, 2.0, 3.0], "b": [1.0, 2.0, 3.0], "c": [0.0, 0.0, 0.0]}
    assert_error(server.post("/v1/models/pair:predict", json={"instances": [row]}), 400)


def test_tf_columnar_missing_named_input_is_400(server):
    assert_error(server.post("/v1/models/pair:predict", json={"inputs": {"a": [[1.0, 2.0, 3.0]]}}), 400,
                 "missing", "b")


# --------------------------------------------------------------------------- binary tensor extension

def _post_binary(server, body, header_length):
    return server.post("/v2/models/digits/infer", data=body,
                       headers={"Inference-Header-Content-Length": str(header_length),
                                "Content-Type": "application/octet-stream"})


def test_v2_binary_header_length_beyond_body_is_400(server):
    body, json_length = v2_binary_request([("image", X[:1])])
    assert_error(_post_binary(server, body, len(body) + 10), 400)


def test_v2_binary_header_length_not_a_number_is_400(server):
    body, _ = v2_binary_request([("image", X[:1])])
    assert_error(_post_binary(server, body, "twelve"), 400)


def test_v2_binary_data_size_disagrees_with_shape_is_400(server):
    header = {"inputs": [{"name": "image", "shape": [1, 1, 8, 8], "datatype": "FP32",
                          "parameters": {"binary_data_size": 128}}]}
    head = json.dumps(header).encode()
    assert_error(_post_binary(server, head + bytes(128), len(head)), 400)


def test_v2_binary_body_shorter_than_declared_is_400(server):
    body, json_length = v2_binary_request([("image", X[:2])])
    assert_error(_post_binary(server, body[:-100], json_length), 400)


def test_v2_binary_body_longer_than_declared_is_400(server):
    body, json_length = v2_binary_request([("image", X[:2])])
    assert_error(_post_binary(server, body + bytes(16), json_length), 400)


def test_v2_binary_bytes_without_header_is_400(server):
    """Without Inference-Header-Content-Length the whole body is JSON, so raw bytes are bad JSON."""
    body, _ = v2_binary_request([("image", X[:1])])
    assert_error(server.post("/v2/models/digits/infer", data=body,
                             headers={"Content-Type": "application/octet-stream"}), 400)


def test_v2_empty_body_is_a_json_error(server):
    """No Inference-Header-Content-Length: the (empty) body is JSON; only an explicit
    Inference-Header-Content-Length: 0 makes a raw binary request."""
    message = assert_error(server.post("/v2/models/pair/infer", data=b""), 400)
    assert "raw" not in message and "binary" not in message, message


def test_v2_binary_data_size_must_be_an_integer(server):
    header = {"inputs": [{"name": "image", "shape": [1, 1, 8, 8], "datatype": "FP32",
                          "parameters": {"binary_data_size": "256"}}]}
    head = json.dumps(header).encode()
    assert_error(_post_binary(server, head + bytes(256), len(head)), 400, "binary_data_size", "integer")


def test_v2_bytes_element_count_must_match_shape(server_factory):
    """BYTES tensors: as many elements as the shape says, in JSON and binary form."""
    server = server_factory.start("--model_name", "digits", "--model_base_path", str(DIGITS_SAMPLES.parent))
    image = (DIGITS_SAMPLES / "digit_3.jpg").read_bytes()
    one = len(image).to_bytes(4, "little") + image
    for shape, payload in (([2], one), ([1], one + one), ([3, 1], one + one)):
        head = json.dumps({"inputs": [{"name": "image", "shape": shape, "datatype": "BYTES",
                                       "parameters": {"binary_data_size": len(payload)}}]}).encode()
        response = server.post("/v2/models/digits/infer", data=head + payload,
                               headers={"Inference-Header-Content-Length": str(len(head))})
        assert_error(response, 400, "BYTES elements", str(shape))
    response = server.post("/v2/models/digits/infer",
                           json={"inputs": [{"name": "image", "shape": [3], "datatype": "BYTES", "data": "abc"}]})
    assert_error(response, 400, "1 element", "needs 3")
    head = json.dumps({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                                   "parameters": {"binary_data_size": len(one)}}]}).encode()
    ok = server.post("/v2/models/digits/infer", data=head + one, headers={"Inference-Header-Content-Length": str(len(head))})
    assert ok.status_code == 200, ok.text


def test_errors_are_json_on_every_protocol(server):
    for response in (server.get("/v1/models/no_such_model"), server.get("/v2/models/no_such_model"),
                     server.post("/v2/models/digits/infer", data=b"{")):
        assert response.headers["Content-Type"].startswith("application/json")
        assert isinstance(response.json()["error"], str)


def test_b64_images_invalid_and_unpadded(server_factory):
    """{"b64"} that is not base64 gets 400 saying so; unpadded and URL-safe base64 are
    accepted (TF Serving decodes both)."""
    import base64
    server = server_factory.start("--model_name", "digits", "--model_base_path", str(DIGITS_SAMPLES.parent))
    image = (DIGITS_SAMPLES / "digit_3.jpg").read_bytes()
    for bad in ("not base64 at all!", "QUJD=QUJD", "A"):
        response = server.post("/v1/models/digits:predict", json={"instances": [{"b64": bad}]})
        assert_error(response, 400, "not valid base64")
    standard = server.post("/v1/models/digits:predict", json={"instances": [{"b64": base64.b64encode(image).decode()}]})
    assert standard.status_code == 200, standard.text
    for text in (base64.b64encode(image).decode().rstrip("="), base64.urlsafe_b64encode(image).decode()):
        response = server.post("/v1/models/digits:predict", json={"instances": [{"b64": text}]})
        assert response.status_code == 200 and response.json() == standard.json(), response.text


def test_rest_api_timeout_in_ms(server_factory, tmp_path):
    """TF Serving's --rest_api_timeout_in_ms (KServe's TF Serving runtime passes it): a REST
    inference not answered within it gets 504 with a JSON error; the server goes on."""
    import numpy as np
    from server_fixtures import slow_bytes
    make_model_dir(tmp_path / "slow", {1: slow_bytes()})
    server = server_factory.start("--model_name", "slow", "--model_base_path", str(tmp_path / "slow"),
                                  "--rest_api_timeout_in_ms", "5")
    x = np.zeros((16, 1024), np.float32)  # 16 rows x 128 layers of 1024 x 1024: far more than 5 ms
    response = server.post("/v2/models/slow/infer",
                           json={"inputs": [{"name": "x", "shape": [16, 1024], "datatype": "FP32", "data": x.ravel().tolist()}]})
    assert_error(response, 504, "deadline")
    assert server.post("/v1/models/slow:predict", json={"instances": x[:16].tolist()}).status_code == 504
    assert server.get("/v2/health/ready").status_code == 200
