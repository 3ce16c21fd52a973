"""model-server driven by TF Serving's own client stubs (tensorflow-serving-api, with
TensorFlow's make_tensor_proto / make_ndarray): PredictionService Predict (JPEG bytes as a
DT_STRING tensor exactly as the classic inception_client sends them, numerics in
tensor_content and in typed *_val fields), GetModelMetadata (SignatureDefMap in an Any),
ModelService GetModelStatus, Classify / Regress refused for a model without a tf.Example
signature, MultiInference UNIMPLEMENTED. On the gRPC port and on the REST port (HTTP/2 prior knowledge); results
equal onnxruntime's and the REST path's.

Needs TensorFlow, so conftest.py runs this module in a child pytest under venv-tf's python
(VENV_TF_PYTHON, set by scripts/test.sh)."""
import base64
import os
import shutil

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2  # noqa: E402
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,  # noqa: E402
                                     inference_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc, regression_pb2)

from grpc_helpers import address, expect_status, grpc_address, rest_address  # noqa: E402,F401 (address: fixture)
from server_fixtures import (DIGITS_SAMPLES, assert_close, digits_batch, digits_bytes, digits_reference,  # noqa: E402
                             make_model_dir, pair_bytes, v2_json_request, v2_output)

pytestmark = pytest.mark.timeout(300)

X = digits_batch()  # [10, 1, 8, 8], sample k is digit k
StatusCode = grpc.StatusCode
AVAILABLE = get_model_status_pb2.ModelVersionStatus.State.Value("AVAILABLE")


@pytest.fixture(scope="module")
def server(module_server_factory, tmp_path_factory):
    """digits: the shipped model with its config.pbtxt (JPEG input, softmax, top 3 answered
    as Inception-style `classes` and `scores`); plain: the same network without a config;
    pair: two inputs, two outputs."""
    repository = tmp_path_factory.mktemp("repository")
    shutil.copytree(DIGITS_SAMPLES.parent, repository / "digits")
    make_model_dir(repository / "plain", {1: digits_bytes()})
    make_model_dir(repository / "pair", {1: pair_bytes()})
    return module_server_factory.start("--model_repository", repository)


@pytest.fixture
def channel(address):
    """A plain channel, as the TF Serving examples open it (default options)."""
    chan = grpc.insecure_channel(address)
    yield chan
    chan.close()


@pytest.fixture
def prediction(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture
def model_service(channel):
    return model_service_pb2_grpc.ModelServiceStub(channel)


def jpeg_sample(k):
    return (DIGITS_SAMPLES / f"digit_{k}.jpg").read_bytes()


def rest_v1_classes(server, images):
    """[(classes, scores)] of REST V1 predict with {"b64": ...} instances."""
    body = {"instances": [{"b64": base64.b64encode(data).decode()} for data in images]}
    response = server.post("/v1/models/digits:predict", json=body)
    assert response.status_code == 200, response.text
    return [(row["classes"], row["scores"]) for row in response.json()["predictions"]]


def predict_request(model, inputs, version=None, signature=None, output_filter=()):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    if version is not None:
        request.model_spec.version.value = version
    if signature is not None:
        request.model_spec.signature_name = signature
    for name, proto in inputs.items():
        request.inputs[name].CopyFrom(proto)
    request.output_filter.extend(output_filter)
    return request


# --------------------------------------------------------------------------- Predict: JPEG bytes

def test_inception_client_predict(server, address):
    """tensorflow_serving/example/inception_client.py, line for line (model, input key and
    signature are this model's: the default signature, input `image`)."""
    data = jpeg_sample(7)
    channel = grpc.insecure_channel(address)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "digits"
    request.inputs["image"].CopyFrom(tf.make_tensor_proto(data, shape=[1]))
    result = stub.Predict(request, 10.0)  # 10 secs timeout
    channel.close()

    tensor = request.inputs["image"]
    assert tensor.dtype == tf.string.as_datatype_enum and list(tensor.string_val) == [data]
    assert set(result.outputs) == {"classes", "scores"}
    classes, scores = result.outputs["classes"], result.outputs["scores"]
    assert classes.dtype == tf.string.as_datatype_enum and scores.dtype == tf.float32.as_datatype_enum
    assert [d.size for d in classes.tensor_shape.dim] == [1, 3] == [d.size for d in scores.tensor_shape.dim]
    names = [value.decode() for value in tf.make_ndarray(classes).ravel()]
    values = tf.make_ndarray(scores).ravel()
    [(rest_classes, rest_scores)] = rest_v1_classes(server, [data])
    assert names == rest_classes and names[0] == "7"
    np.testing.assert_allclose(values, rest_scores, rtol=1e-6, atol=1e-7)
    assert result.model_spec.name == "digits" and result.model_spec.version.value == 1
    assert result.model_spec.signature_name == "serving_default"


def test_predict_batch_of_jpegs(server, prediction):
    images = [jpeg_sample(k) for k in range(10)]
    result = prediction.Predict(predict_request("digits", {"image": tf.make_tensor_proto(images, shape=[10])}), 10.0)
    names = tf.make_ndarray(result.outputs["classes"])
    scores = tf.make_ndarray(result.outputs["scores"])
    assert names.shape == (10, 3) and scores.shape == (10, 3)
    for k, (rest_classes, rest_scores) in enumerate(rest_v1_classes(server, images)):
        assert [value.decode() for value in names[k]] == rest_classes
        np.testing.assert_allclose(scores[k], rest_scores, rtol=1e-6, atol=1e-7)
        assert names[k][0].decode() == str(k)


# --------------------------------------------------------------------------- Predict: numeric tensors

def test_predict_tensor_content(server, prediction):
    proto = tf.make_tensor_proto(X)
    assert proto.tensor_content and not proto.float_val  # TF's encoding of a numpy array
    result = prediction.Predict(predict_request("plain", {"image": proto}), 10.0)
    assert set(result.outputs) == {"logits"}
    logits = tf.make_ndarray(result.outputs["logits"])
    assert logits.dtype == np.float32
    assert_close(logits, digits_reference(X))
    rest = server.post("/v2/models/plain/infer", json=v2_json_request(X))
    np.testing.assert_array_equal(logits, v2_output(rest.json(), "logits"))
    assert result.model_spec.name == "plain" and result.model_spec.version.value == 1


def test_predict_typed_float_val(prediction):
    x = X[2:5]
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=x.ravel().tolist(),
                                   tensor_shape=tensor_shape_pb2.TensorShapeProto(
                                       dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in x.shape]))
    result = prediction.Predict(predict_request("plain", {"image": proto}, version=1, signature="serving_default"),
                                10.0)
    assert_close(tf.make_ndarray(result.outputs["logits"]), digits_reference(x))


def test_predict_two_inputs_and_output_filter(prediction):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.full((2, 3), 0.25, np.float32)
    inputs = {"a": tf.make_tensor_proto(a), "b": tf.make_tensor_proto(b)}
    both = prediction.Predict(predict_request("pair", inputs), 10.0)
    assert set(both.outputs) == {"sum", "diff"}
    assert_close(tf.make_ndarray(both.outputs["sum"]), a + b)
    only = prediction.Predict(predict_request("pair", inputs, version=1, output_filter=["diff"]), 10.0)
    assert set(only.outputs) == {"diff"}
    assert_close(tf.make_ndarray(only.outputs["diff"]), a - b)


def test_predict_errors(prediction):
    image = tf.make_tensor_proto(X[:1])
    expect_status(StatusCode.NOT_FOUND, prediction.Predict, predict_request("no_such_model", {"image": image}), 10.0,
                  fragments=["no_such_model"])
    expect_status(StatusCode.NOT_FOUND, prediction.Predict, predict_request("plain", {"image": image}, version=9), 10.0)
    expect_status(StatusCode.INVALID_ARGUMENT, prediction.Predict,
                  predict_request("plain", {"image": tf.make_tensor_proto(X[:1].astype(np.int32))}), 10.0)
    expect_status(StatusCode.INVALID_ARGUMENT, prediction.Predict,
                  predict_request("plain", {"image": tf.make_tensor_proto(np.zeros((1, 1, 8, 7), np.float32))}), 10.0)
    stray = expect_status(StatusCode.INVALID_ARGUMENT, prediction.Predict, predict_request("plain", {"picture": image}),
                          10.0)
    assert "picture" in stray or "image" in stray, stray  # names the stray or the missing input
    a = tf.make_tensor_proto(np.ones((1, 3), np.float32))
    expect_status(StatusCode.INVALID_ARGUMENT, prediction.Predict, predict_request("pair", {"a": a}), 10.0)
    expect_status(StatusCode.INVALID_ARGUMENT, prediction.Predict,
                  predict_request("pair", {"a": a, "b": a}, output_filter=["nope"]), 10.0, fragments=["nope"])
    with pytest.raises(grpc.RpcError) as signature:
        prediction.Predict(predict_request("plain", {"image": image}, signature="predict_images"), 10.0)
    assert signature.value.code() in (StatusCode.INVALID_ARGUMENT, StatusCode.NOT_FOUND), signature.value
    assert "predict_images" in signature.value.details()
    assert_close(tf.make_ndarray(prediction.Predict(predict_request("plain", {"image": image}), 10.0)
                                 .outputs["logits"]), digits_reference(X[:1]))


# --------------------------------------------------------------------------- metadata and status

def metadata_request(model, fields=("signature_def",), version=None):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = model
    if version is not None:
        request.model_spec.version.value = version
    request.metadata_field.extend(fields)
    return request


@pytest.mark.parametrize("version", [None, 1])
def test_get_model_metadata(server, prediction, version):
    response = prediction.GetModelMetadata(metadata_request("plain", version=version), 10.0)
    assert response.model_spec.name == "plain" and response.model_spec.version.value == 1
    any_value = response.metadata["signature_def"]
    assert any_value.type_url == "type.googleapis.com/tensorflow.serving.SignatureDefMap", any_value.type_url
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert any_value.Unpack(signatures)
    signature = signatures.signature_def["serving_default"]
    assert signature.method_name == "tensorflow/serving/predict"
    assert set(signature.inputs) == {"image"} and set(signature.outputs) == {"logits"}
    image, logits = signature.inputs["image"], signature.outputs["logits"]
    assert image.dtype == tf.float32.as_datatype_enum and logits.dtype == tf.float32.as_datatype_enum
    assert [d.size for d in image.tensor_shape.dim] == [-1, 1, 8, 8]
    assert [d.size for d in logits.tensor_shape.dim] == [-1, 10]
    rest = server.get("/v1/models/plain/metadata").json()["metadata"]["signature_def"]["signature_def"]
    assert set(rest) == set(signatures.signature_def)
    for name, entry in rest.items():
        ours = signatures.signature_def[name]
        assert entry["method_name"] == ours.method_name
        for key in ("inputs", "outputs"):
            assert {alias: [int(d["size"]) for d in info["tensor_shape"]["dim"]] for alias, info in entry[key].items()} == \
                {alias: [d.size for d in info.tensor_shape.dim] for alias, info in getattr(ours, key).items()}


def test_get_model_metadata_errors(prediction):
    expect_status(StatusCode.INVALID_ARGUMENT, prediction.GetModelMetadata, metadata_request("plain", fields=()), 10.0,
                  fragments=["metadata_field"])
    expect_status(StatusCode.INVALID_ARGUMENT, prediction.GetModelMetadata,
                  metadata_request("plain", fields=("signature_def", "graph_def")), 10.0, fragments=["graph_def"])
    expect_status(StatusCode.NOT_FOUND, prediction.GetModelMetadata, metadata_request("no_such_model"), 10.0,
                  fragments=["no_such_model"])


def test_get_model_status(model_service):
    for version in (None, 1):
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "plain"
        if version is not None:
            request.model_spec.version.value = version
        response = model_service.GetModelStatus(request, 10.0)
        assert [(s.version, s.state, s.status.error_code, s.status.error_message)
                for s in response.model_version_status] == [(1, AVAILABLE, 0, "")]
    unknown = get_model_status_pb2.GetModelStatusRequest()
    unknown.model_spec.name = "no_such_model"
    expect_status(StatusCode.NOT_FOUND, model_service.GetModelStatus, unknown, 10.0, fragments=["no_such_model"])
    missing_version = get_model_status_pb2.GetModelStatusRequest()
    missing_version.model_spec.name = "plain"
    missing_version.model_spec.version.value = 9
    expect_status(StatusCode.NOT_FOUND, model_service.GetModelStatus, missing_version, 10.0)


# --------------------------------------------------------------------------- unimplemented methods

def _example_input(message):
    example = message.input.example_list.examples.add()
    example.features.feature["x"].float_list.value.extend([1.0, 2.0])
    return message


def test_classify_regress_need_an_example_signature_and_multi_inference_is_unimplemented(prediction):
    classify = _example_input(classification_pb2.ClassificationRequest())
    classify.model_spec.name = "plain"
    regress = _example_input(regression_pb2.RegressionRequest())
    regress.model_spec.name = "plain"
    multi = _example_input(inference_pb2.MultiInferenceRequest())
    task = multi.tasks.add()
    task.model_spec.name = "plain"
    task.method_name = "tensorflow/serving/classify"
    # An ONNX model has no tf.Example signature: the request is refused, naming why.
    for call, request in ((prediction.Classify, classify), (prediction.Regress, regress)):
        expect_status(StatusCode.INVALID_ARGUMENT, call, request, 10.0)
    expect_status(StatusCode.UNIMPLEMENTED, prediction.MultiInference, multi, 10.0)
    proto = tf.make_tensor_proto(X[:1])
    assert_close(tf.make_ndarray(prediction.Predict(predict_request("plain", {"image": proto}), 10.0)
                                 .outputs["logits"]), digits_reference(X[:1]))
