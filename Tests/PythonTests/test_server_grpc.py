"""model-server over gRPC (inference.GRPCInferenceService, grpc.health.v1.Health), driven by
Triton's tritonclient.grpc, by raw grpcio calls with hand-built messages, and by the nghttp2
tools (nghttp for single requests whose headers and trailers are read as the server sent
them, h2load for load). Results equal onnxruntime's and the REST path's; errors are exact
gRPC status codes with clear messages; the transport honours deadlines, cancellation,
message limits, many streams per connection and graceful shutdown; gRPC requests join the
same batching queues as REST.

tritonclient.grpc and the KServe SDK cannot share a process (same protobuf symbols), so
conftest.py runs this module in a child pytest (ISOLATED); KServe's gRPC client is tested
in test_server_grpc_kserve.py, TF Serving's in test_server_grpc_tf.py."""
import concurrent.futures
import re
import select
import signal
import socket
import subprocess
import tempfile
import time

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from tritonclient.grpc import model_config_pb2, service_pb2
from tritonclient.utils import InferenceServerException

from grpc_helpers import (HEALTH_CHECK, MAX_MESSAGE, MiB, RPC_TIMEOUT, SERVING, address, assert_equal_arrays, batch_sizes,
                          calibrate_slow, channel, expect_status, frame, grpc_address, h2load, health_request,
                          health_status, in_flight, nghttp, raw_method, rest_address, wait_for)
from image_reference import reference_preprocess
from server_fixtures import (DTYPES, HOST, READY_TIMEOUT, STOP_TIMEOUT, RawReader, assert_close, base_path_args,
                             digits_batch, digits_bytes, http_request_bytes, raw_connect,
                             digits_reference, dtypes_bytes, echo_bytes, make_model_dir, mobilenet_bytes, pair_bytes,
                             reference, slow_bytes, v2_binary_request, v2_json_request, v2_output, v2_parse_response)
from test_server_images import CONFIG as JPEG_CONFIG, jpeg

pytestmark = pytest.mark.timeout(300)

X = digits_batch()  # [10, 1, 8, 8], sample k is digit k
SERVICE = "/inference.GRPCInferenceService/"
StatusCode = grpc.StatusCode

JPEG_MODEL_CONFIG = "\n".join([
    "max_batch_size: 8",
    "dynamic_batching { max_queue_delay_microseconds: 1000 }",
    'parameters { key: "image_input" value { string_value: "input" } }',
    'parameters { key: "image_resize" value { string_value: "shorter_side:256" } }',
    'parameters { key: "image_scale" value { string_value: "%r" } }' % JPEG_CONFIG["scale"],
    'parameters { key: "image_mean" value { string_value: "1" } }',
]) + "\n"


@pytest.fixture(scope="module")
def server(module_server_factory, tmp_path_factory, keras_models):
    """Triton layout: digits, pair (two inputs, two outputs), dtypes (one input per element
    type), echo (FP32 [n] -> the same), mobilenet (FP32) and mobilenet_jpeg (the same network
    fed with JPEG bytes)."""
    repository = tmp_path_factory.mktemp("repository")
    make_model_dir(repository / "digits", {1: digits_bytes()})
    make_model_dir(repository / "pair", {1: pair_bytes()})
    make_model_dir(repository / "dtypes", {1: dtypes_bytes()})
    make_model_dir(repository / "echo", {1: echo_bytes()})
    make_model_dir(repository / "mobilenet", {1: mobilenet_bytes(keras_models)})
    make_model_dir(repository / "mobilenet_jpeg", {1: mobilenet_bytes(keras_models)})
    (repository / "mobilenet_jpeg" / "config.pbtxt").write_text(JPEG_MODEL_CONFIG)
    return module_server_factory.start("--model_repository", repository)


@pytest.fixture
def triton(server):
    client = triton_grpc.InferenceServerClient(grpc_address(server))
    yield client
    client.close()


@pytest.fixture
def stub(server):
    """Raw grpcio: hand-built service_pb2 messages on one channel to the gRPC port."""
    chan = channel(grpc_address(server))
    yield Stub(chan)
    chan.close()


class Stub:
    """The GRPCInferenceService methods used here, as plain grpcio multi-callables."""

    def __init__(self, chan):
        self.channel = chan
        for name, request, response in [
                ("ServerLive", service_pb2.ServerLiveRequest, service_pb2.ServerLiveResponse),
                ("ServerReady", service_pb2.ServerReadyRequest, service_pb2.ServerReadyResponse),
                ("ModelReady", service_pb2.ModelReadyRequest, service_pb2.ModelReadyResponse),
                ("ModelMetadata", service_pb2.ModelMetadataRequest, service_pb2.ModelMetadataResponse),
                ("ModelInfer", service_pb2.ModelInferRequest, service_pb2.ModelInferResponse)]:
            setattr(self, name, chan.unary_unary(SERVICE + name, request_serializer=request.SerializeToString,
                                                 response_deserializer=response.FromString))


_NUMPY = {"FP32": np.float32, "FP64": np.float64, "INT8": np.int8, "UINT8": np.uint8, "INT16": np.int16,
          "UINT16": np.uint16, "INT32": np.int32, "UINT32": np.uint32, "INT64": np.int64, "UINT64": np.uint64,
          "BOOL": np.bool_}
_CONTENTS = {"FP32": "fp32_contents", "FP64": "fp64_contents", "INT8": "int_contents", "INT16": "int_contents",
             "INT32": "int_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
             "INT64": "int64_contents", "UINT64": "uint64_contents", "BOOL": "bool_contents"}


def infer_request(model, inputs, raw=True, outputs=None, request_id=""):
    """ModelInferRequest for inputs [(name, array)]: raw_input_contents (little-endian bytes, as
    tritonclient sends) or typed `contents`."""
    datatypes = {np.dtype(v): k for k, v in _NUMPY.items() if k not in ("INT16", "UINT16", "UINT32", "UINT64")}
    request = service_pb2.ModelInferRequest(model_name=model, id=request_id)
    for name, array in inputs:
        array = np.asarray(array)
        datatype = datatypes[array.dtype]
        tensor = request.inputs.add(name=name, datatype=datatype, shape=list(array.shape))
        if raw:
            request.raw_input_contents.append(np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes())
        else:
            getattr(tensor.contents, _CONTENTS[datatype]).extend(array.ravel().tolist())
    for name in outputs or []:
        request.outputs.add(name=name)
    return request


def response_arrays(response, raw_expected=None):
    """{name: array} of a ModelInferResponse. raw_output_contents (one entry per output) or,
    if the server answered typed `contents`, those; raw_expected=True demands raw."""
    raw = list(response.raw_output_contents)
    if raw_expected:
        assert len(raw) == len(response.outputs), \
            f"{len(raw)} raw_output_contents for {len(response.outputs)} outputs: tritonclient reads only raw outputs"
    arrays = {}
    for index, output in enumerate(response.outputs):
        dtype = np.dtype(_NUMPY[output.datatype]).newbyteorder("<")
        if raw:
            assert not output.HasField("contents"), f"{output.name}: both raw and typed contents"
            values = np.frombuffer(raw[index], dtype=dtype)
        else:
            values = np.asarray(getattr(output.contents, _CONTENTS[output.datatype]))
        arrays[output.name] = values.astype(dtype.newbyteorder("=")).reshape(list(output.shape))
    return arrays


def triton_input(name, array, datatype="FP32"):
    tensor = triton_grpc.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def triton_error(call, *args, **kwargs):
    with pytest.raises(InferenceServerException) as info:
        call(*args, **kwargs)
    return info.value


def model_ready(client, model, version=""):
    """tritonclient.grpc's is_model_ready; a NOT_FOUND answer counts as not ready (Triton
    answers ready=false for unknown models; NOT_FOUND is as clear)."""
    try:
        return client.is_model_ready(model, version)
    except InferenceServerException as error:
        assert error.status() == "StatusCode.NOT_FOUND", (model, version, error)
        return False


def rest_v2_logits(server, x):
    response = server.post("/v2/models/digits/infer", json=v2_json_request(x))
    assert response.status_code == 200, response.text
    return v2_output(response.json(), "logits")


# --------------------------------------------------------------------------- tritonclient.grpc: health and metadata

def test_triton_health(server, address):
    client = triton_grpc.InferenceServerClient(address)
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("digits")
        assert client.is_model_ready("digits", "1")
        assert client.is_model_ready("mobilenet_jpeg")
        assert model_ready(client, "no_such_model") is False
        assert model_ready(client, "digits", "9") is False
    finally:
        client.close()


def test_triton_server_metadata_equals_rest(server, triton):
    metadata = triton.get_server_metadata()
    rest = server.get("/v2").json()
    assert metadata.name and metadata.version
    assert (metadata.name, metadata.version, list(metadata.extensions)) == \
        (rest["name"], rest["version"], rest["extensions"])


@pytest.mark.parametrize("version", ["", "1"])
def test_triton_model_metadata(server, triton, version):
    metadata = triton.get_model_metadata("digits", version)
    assert metadata.name == "digits"
    assert "1" in metadata.versions
    assert metadata.platform == server.get("/v2/models/digits").json()["platform"]
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [("image", "FP32", [-1, 1, 8, 8])]
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.outputs] == [("logits", "FP32", [-1, 10])]


def test_triton_model_metadata_several_tensors(triton):
    metadata = triton.get_model_metadata("dtypes")
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == \
        [(name, datatype, [-1]) for name, (_, _, datatype) in DTYPES.items()]
    assert [t.name for t in metadata.outputs] == [f"{name}_out" for name in DTYPES]


@pytest.mark.parametrize("model", ["digits", "mobilenet_jpeg"])
def test_triton_model_config_equals_rest(server, triton, model):
    config = triton.get_model_config(model).config
    rest = server.get(f"/v2/models/{model}/config").json()
    assert config.name == model == rest["name"]
    assert config.platform == rest["platform"]
    assert config.max_batch_size == rest["max_batch_size"]
    for ours, theirs in [(config.input, rest["input"]), (config.output, rest["output"])]:
        assert [(t.name, model_config_pb2.DataType.Name(t.data_type), list(t.dims)) for t in ours] == \
            [(t["name"], t["data_type"], t["dims"]) for t in theirs]


def test_triton_unknown_model_metadata_and_config(triton):
    for call in (triton.get_model_metadata, triton.get_model_config):
        error = triton_error(call, "no_such_model")
        assert error.status() == "StatusCode.NOT_FOUND" and "no_such_model" in error.message(), error


# --------------------------------------------------------------------------- tritonclient.grpc: inference

def test_triton_infer_equals_onnxruntime_and_rest(server, address):
    client = triton_grpc.InferenceServerClient(address)
    try:
        result = client.infer("digits", [triton_input("image", X)],
                              outputs=[triton_grpc.InferRequestedOutput("logits")], request_id="triton-grpc-1")
    finally:
        client.close()
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == ("digits", "1", "triton-grpc-1")
    assert len(response.raw_output_contents) == 1  # tritonclient reads only raw outputs
    logits = result.as_numpy("logits")
    assert logits.dtype == np.float32
    assert_close(logits, digits_reference(X))
    np.testing.assert_array_equal(logits, rest_v2_logits(server, X))  # the same engine path: identical
    assert np.argmax(logits, axis=1).tolist() == list(range(10))


def test_triton_infer_default_outputs_and_version(triton):
    result = triton.infer("digits", [triton_input("image", X[:3])], model_version="1")
    assert result.get_response().model_version == "1"
    assert [output.name for output in result.get_response().outputs] == ["logits"]
    assert_close(result.as_numpy("logits"), digits_reference(X[:3]))


def test_triton_infer_two_inputs_output_subset(triton):
    a = np.arange(12, dtype=np.float32).reshape(4, 3)
    b = np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3)
    both = triton.infer("pair", [triton_input("a", a), triton_input("b", b)])
    assert_close(both.as_numpy("sum"), a + b)
    assert_close(both.as_numpy("diff"), a - b)
    only = triton.infer("pair", [triton_input("a", a), triton_input("b", b)],
                        outputs=[triton_grpc.InferRequestedOutput("diff")])
    assert [output.name for output in only.get_response().outputs] == ["diff"]
    assert_close(only.as_numpy("diff"), a - b)
    assert only.as_numpy("sum") is None


def test_triton_infer_every_element_type(triton):
    rng = np.random.default_rng(5)
    arrays = {
        "f32": rng.standard_normal(7).astype(np.float32),
        "f64": rng.standard_normal(7),
        "i8": np.array([-128, -1, 0, 1, 127, 5, -7], np.int8),
        "u8": np.array([0, 1, 127, 128, 255, 9, 200], np.uint8),
        "i32": np.array([-2**31, -1, 0, 1, 2**31 - 1, 77, -77], np.int32),
        "i64": np.array([-2**63, -1, 0, 1, 2**63 - 1, 2**40, -2**40], np.int64),
        "b": np.array([True, False, True, True, False, False, True]),
    }
    inputs = [triton_input(name, arrays[name], datatype) for name, (_, _, datatype) in DTYPES.items()]
    result = triton.infer("dtypes", inputs)
    for name, (_, _, datatype) in DTYPES.items():
        output = next(o for o in result.get_response().outputs if o.name == f"{name}_out")
        assert output.datatype == datatype and list(output.shape) == [7]
        assert_equal_arrays(result.as_numpy(f"{name}_out"), arrays[name])


def test_triton_infer_mobilenet_equals_onnxruntime_and_rest(server, triton, keras_models):
    x = np.load(keras_models / "mobilenet_v2" / "input_b4.npy").astype(np.float32)
    result = triton.infer("mobilenet", [triton_input("input", x)])
    expected = reference(mobilenet_bytes(keras_models), {"input": x})["predictions"]
    assert_close(result.as_numpy("predictions"), expected)
    body, json_length = v2_binary_request([("input", x)])
    rest = server.post("/v2/models/mobilenet/infer", data=body,
                       headers={"Inference-Header-Content-Length": str(json_length)})
    assert rest.status_code == 200, rest.text
    _, arrays = v2_parse_response(rest.content, rest.headers)
    np.testing.assert_array_equal(result.as_numpy("predictions"), arrays["predictions"])


def test_triton_infer_jpeg_bytes(triton, keras_models):
    """BYTES input of whole JPEG files (length-prefixed in raw_input_contents) decoded by the
    server: equal to the reference preprocessing run through onnxruntime."""
    images = [jpeg(640, 480, 21), jpeg(300, 500, 22), jpeg(224, 224, 23)]
    tensor = triton_grpc.InferInput("input", [len(images)], "BYTES")
    tensor.set_data_from_numpy(np.array(images, dtype=np.object_))
    result = triton.infer("mobilenet_jpeg", [tensor])
    expected = reference(mobilenet_bytes(keras_models),
                         {"input": np.stack([reference_preprocess(data, JPEG_CONFIG) for data in images])})["predictions"]
    ours = result.as_numpy("predictions")
    np.testing.assert_allclose(ours, expected, atol=2e-3, rtol=2e-3)
    assert (ours.argmax(1) == expected.argmax(1)).all()


def test_triton_errors_carry_codes_and_messages(server, triton):
    image = triton_input("image", X[:1])
    unknown = triton_error(triton.infer, "no_such_model", [image])
    assert unknown.status() == "StatusCode.NOT_FOUND" and "no_such_model" in unknown.message(), unknown
    version = triton_error(triton.infer, "digits", [image], model_version="9")
    assert version.status() == "StatusCode.NOT_FOUND" and "9" in version.message(), version
    shape = triton_error(triton.infer, "digits", [triton_input("image", np.zeros((1, 1, 8, 7), np.float32))])
    assert shape.status() == "StatusCode.INVALID_ARGUMENT" and shape.message(), shape
    dtype = triton_error(triton.infer, "digits", [triton_input("image", np.zeros((1, 1, 8, 8), np.int32), "INT32")])
    assert dtype.status() == "StatusCode.INVALID_ARGUMENT", dtype
    assert "INT32" in dtype.message() or "FP32" in dtype.message(), dtype
    name = triton_error(triton.infer, "digits", [triton_input("picture", X[:1])])
    assert name.status() == "StatusCode.INVALID_ARGUMENT", name
    assert "picture" in name.message() or "image" in name.message(), name  # names the stray or the missing input
    output = triton_error(triton.infer, "digits", [image], outputs=[triton_grpc.InferRequestedOutput("nope")])
    assert output.status() in ("StatusCode.INVALID_ARGUMENT", "StatusCode.NOT_FOUND") and "nope" in output.message()
    assert triton.is_server_ready()
    assert_close(triton.infer("digits", [image]).as_numpy("logits"), digits_reference(X[:1]))


# --------------------------------------------------------------------------- tritonclient.grpc: repository

def test_triton_repository_index_load_unload(server_factory, tmp_path):
    repository = tmp_path / "repository"
    make_model_dir(repository / "digits", {1: digits_bytes()})
    make_model_dir(repository / "pair", {1: pair_bytes()})
    server = server_factory.start("--model_repository", repository)
    client = triton_grpc.InferenceServerClient(grpc_address(server))
    try:
        index = {entry.name: entry for entry in client.get_model_repository_index().models}
        assert {name: entry.state for name, entry in index.items()} == {"digits": "READY", "pair": "READY"}, index
        rest = {entry["name"]: entry for entry in server.post("/v2/repository/index").json()}
        assert {name: (e.version, e.state, e.reason) for name, e in index.items()} == \
            {name: (e.get("version", ""), e["state"], e["reason"]) for name, e in rest.items()}

        client.unload_model("pair")
        wait_for(lambda: not model_ready(client, "pair"), 10, "pair unloaded")
        assert client.get_model_repository_index().models  # still listed
        states = {entry.name: entry.state for entry in client.get_model_repository_index().models}
        assert states["pair"] != "READY" and states["digits"] == "READY", states
        a = np.ones((1, 3), np.float32)
        error = triton_error(client.infer, "pair", [triton_input("a", a), triton_input("b", a)])
        assert error.status() in ("StatusCode.NOT_FOUND", "StatusCode.UNAVAILABLE") and "pair" in error.message()
        assert_close(client.infer("digits", [triton_input("image", X[:2])]).as_numpy("logits"), digits_reference(X[:2]))

        client.load_model("pair")  # returns once loaded
        assert client.is_model_ready("pair")
        assert_close(client.infer("pair", [triton_input("a", a), triton_input("b", 2 * a)]).as_numpy("sum"), 3 * a)
        unknown = triton_error(client.load_model, "no_such_model")
        assert unknown.status() in ("StatusCode.NOT_FOUND", "StatusCode.INVALID_ARGUMENT"), unknown
        assert "no_such_model" in unknown.message()
    finally:
        client.close()


def test_repository_messages_use_tritons_field_layout(server_factory, tmp_path):
    """Hand-built bytes: RepositoryModelUnloadRequest{repository_name = 1, model_name = 2}."""
    repository = tmp_path / "repository"
    make_model_dir(repository / "digits", {1: digits_bytes()})
    make_model_dir(repository / "pair", {1: pair_bytes()})
    server = server_factory.start("--model_repository", repository)
    chan = channel(grpc_address(server))
    try:
        unload = raw_method(chan, SERVICE + "RepositoryModelUnload")
        load = raw_method(chan, SERVICE + "RepositoryModelLoad")
        ready = raw_method(chan, SERVICE + "ModelReady")
        model_name_field_2 = b"\x12\x04pair"
        assert model_name_field_2 == service_pb2.RepositoryModelUnloadRequest(model_name="pair").SerializeToString()
        assert unload(model_name_field_2, timeout=RPC_TIMEOUT) == b""  # RepositoryModelUnloadResponse {}
        def unloaded():
            try:
                return ready(b"\x0a\x04pair", timeout=RPC_TIMEOUT) in (b"", b"\x08\x00")  # ready: false
            except grpc.RpcError as error:
                assert error.code() == StatusCode.NOT_FOUND, error
                return True
        wait_for(unloaded, 10, "pair unloaded")
        assert load(model_name_field_2, timeout=RPC_TIMEOUT) == b""
        assert ready(b"\x0a\x04pair", timeout=RPC_TIMEOUT) == b"\x08\x01"  # ModelReadyResponse{ready: true}
    finally:
        chan.close()


# --------------------------------------------------------------------------- raw grpcio: messages

def test_raw_health_and_metadata_calls(stub):
    assert stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=RPC_TIMEOUT).live is True
    assert stub.ServerReady(service_pb2.ServerReadyRequest(), timeout=RPC_TIMEOUT).ready is True
    assert stub.ModelReady(service_pb2.ModelReadyRequest(name="pair"), timeout=RPC_TIMEOUT).ready is True
    metadata = stub.ModelMetadata(service_pb2.ModelMetadataRequest(name="pair", version="1"), timeout=RPC_TIMEOUT)
    assert [t.name for t in metadata.inputs] == ["a", "b"] and [t.name for t in metadata.outputs] == ["sum", "diff"]
    # Empty messages on the wire are zero-length payloads; replies decode by hand too.
    live = raw_method(stub.channel, SERVICE + "ServerLive")
    assert live(b"", timeout=RPC_TIMEOUT) == b"\x08\x01"


@pytest.mark.parametrize("raw", [True, False], ids=["raw_input_contents", "typed-contents"])
def test_raw_model_infer(server, stub, raw):
    request = infer_request("digits", [("image", X)], raw=raw, request_id=f"raw-{raw}")
    response = stub.ModelInfer(request, timeout=RPC_TIMEOUT)
    assert (response.model_name, response.model_version, response.id) == ("digits", "1", f"raw-{raw}")
    arrays = response_arrays(response, raw_expected=raw)  # raw in -> raw out (tritonclient reads nothing else)
    assert list(arrays) == ["logits"]
    assert_close(arrays["logits"], digits_reference(X))
    np.testing.assert_array_equal(arrays["logits"], rest_v2_logits(server, X))


def test_raw_typed_contents_every_element_type(stub):
    """int_contents carries INT8/INT32, uint_contents UINT8 (widened to 32 bits on the wire)."""
    arrays = {"f32": np.array([1.5, -2.25, 3e38], np.float32), "f64": np.array([1e300, -0.1, 2.0]),
              "i8": np.array([-128, 0, 127], np.int8), "u8": np.array([0, 128, 255], np.uint8),
              "i32": np.array([-2**31, 0, 2**31 - 1], np.int32), "i64": np.array([-2**63, 0, 2**63 - 1], np.int64),
              "b": np.array([True, False, True])}
    response = stub.ModelInfer(infer_request("dtypes", [(name, arrays[name]) for name in DTYPES], raw=False),
                               timeout=RPC_TIMEOUT)
    outputs = response_arrays(response)
    for name in DTYPES:
        assert_equal_arrays(outputs[f"{name}_out"], arrays[name])


def test_raw_infer_errors(stub):
    x = X[:1]
    mixed = infer_request("digits", [("image", x)], raw=False)
    mixed.raw_input_contents.append(x.tobytes())
    expect_status(StatusCode.INVALID_ARGUMENT, stub.ModelInfer, mixed, timeout=RPC_TIMEOUT)
    short = infer_request("digits", [("image", x)])
    short.raw_input_contents[0] = short.raw_input_contents[0][:-4]
    expect_status(StatusCode.INVALID_ARGUMENT, stub.ModelInfer, short, timeout=RPC_TIMEOUT)
    missing = infer_request("digits", [("image", x)])
    del missing.raw_input_contents[:]
    expect_status(StatusCode.INVALID_ARGUMENT, stub.ModelInfer, missing, timeout=RPC_TIMEOUT)
    few = infer_request("digits", [("image", x)], raw=False)
    del few.inputs[0].contents.fp32_contents[-1]
    expect_status(StatusCode.INVALID_ARGUMENT, stub.ModelInfer, few, timeout=RPC_TIMEOUT)
    bad_type = infer_request("digits", [("image", x)])
    bad_type.inputs[0].datatype = "FP33"
    expect_status(StatusCode.INVALID_ARGUMENT, stub.ModelInfer, bad_type, timeout=RPC_TIMEOUT, fragments=["FP33"])
    unknown = infer_request("no_such_model", [("image", x)])
    expect_status(StatusCode.NOT_FOUND, stub.ModelInfer, unknown, timeout=RPC_TIMEOUT, fragments=["no_such_model"])
    # Not a protobuf message at all: a parse failure, never a crash.
    garbage = raw_method(stub.channel, SERVICE + "ModelInfer")
    with pytest.raises(grpc.RpcError) as info:
        garbage(b"\xff\xff\xff\xff\x0f\x0a", timeout=RPC_TIMEOUT)
    assert info.value.code() in (StatusCode.INVALID_ARGUMENT, StatusCode.INTERNAL), info.value
    assert_close(response_arrays(stub.ModelInfer(infer_request("digits", [("image", x)]), timeout=RPC_TIMEOUT))["logits"],
                 digits_reference(x))


def test_unknown_methods_are_unimplemented(stub):
    for path in (SERVICE + "NoSuchRpc", "/no.such.Service/Method", "/inference.grpcinferenceservice/ModelInfer"):
        message = expect_status(StatusCode.UNIMPLEMENTED, raw_method(stub.channel, path), b"", timeout=RPC_TIMEOUT)
        method = path.rsplit("/", 1)[1]
        service = path.split("/")[1]
        assert method in message or service in message, f"{path}: {message!r} names neither method nor service"
    assert stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=RPC_TIMEOUT).live


def test_unary_call_with_two_or_no_messages_is_unimplemented(stub):
    """Cardinality violations (grpc statuscodes.md): a unary method gets exactly one message."""
    two = stub.channel.stream_unary(SERVICE + "ServerLive", request_serializer=None, response_deserializer=None)
    expect_status(StatusCode.UNIMPLEMENTED, two, iter([b"", b""]), timeout=RPC_TIMEOUT)
    expect_status(StatusCode.UNIMPLEMENTED, two, iter([]), timeout=RPC_TIMEOUT)
    assert stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=RPC_TIMEOUT).live


def test_streaming_infer_is_refused_before_the_client_half_closes(stub):
    """ModelStreamInfer (bidi streaming) is not implemented: the answer comes as soon as the
    stream opens, not after the client's requests end (they never do here)."""
    stream = stub.channel.stream_stream(SERVICE + "ModelStreamInfer", request_serializer=None, response_deserializer=None)

    def requests():
        yield infer_request("digits", [("image", X[:1])]).SerializeToString()
        time.sleep(30)  # keeps the request side open

    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        for _ in stream(requests(), timeout=20):
            pass
    assert info.value.code() == StatusCode.UNIMPLEMENTED, info.value
    assert "ModelStreamInfer" in info.value.details() and "ModelInfer" in info.value.details(), info.value.details()
    assert time.monotonic() - started < 5
    assert stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=RPC_TIMEOUT).live


def test_health_check(server, address):
    chan = channel(address)
    try:
        check = raw_method(chan, HEALTH_CHECK)
        assert health_status(check(health_request(""), timeout=RPC_TIMEOUT)) == SERVING
        assert health_status(check(health_request("digits"), timeout=RPC_TIMEOUT)) == SERVING
        expect_status(StatusCode.NOT_FOUND, check, health_request("no_such_model"), timeout=RPC_TIMEOUT)
    finally:
        chan.close()


def test_custom_metadata_is_ignored(stub):
    metadata = [("x-request-tag", "abc"), ("x-trace-bin", b"\x00\x01\xff"), ("authorization", "Bearer t")]
    response = stub.ModelInfer(infer_request("digits", [("image", X[:2])]), metadata=metadata, timeout=RPC_TIMEOUT)
    assert_close(response_arrays(response)["logits"], digits_reference(X[:2]))


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests(stub, triton, algorithm):
    """grpcio compresses each message (flag 1, grpc-encoding); the server inflates it."""
    request = infer_request("digits", [("image", X)])
    compression = {"gzip": grpc.Compression.Gzip, "deflate": grpc.Compression.Deflate}[algorithm]
    answer = stub.ModelInfer(request, timeout=RPC_TIMEOUT, compression=compression)
    assert_close(response_arrays(answer)["logits"], digits_reference(X))
    result = triton.infer("digits", [triton_input("image", X)], compression_algorithm=algorithm)
    assert_close(result.as_numpy("logits"), digits_reference(X))
    # The same connection goes on serving uncompressed calls.
    assert_close(response_arrays(stub.ModelInfer(request, timeout=RPC_TIMEOUT))["logits"], digits_reference(X))


# --------------------------------------------------------------------------- transport, on the wire (nghttp)

GRPC_HEADERS = {"content-type": "application/grpc", "te": "trailers"}


def test_wire_response_headers_and_trailers(server, address):
    body = frame(infer_request("digits", [("image", X[:1])]).SerializeToString())
    ok = nghttp(address, SERVICE + "ModelInfer", body, GRPC_HEADERS)
    assert ok.fields.get(":status") == "200", ok.output
    assert ok.fields.get("content-type", "").startswith("application/grpc"), ok.output
    assert ok.grpc_status == 0, ok.output
    missing = nghttp(address, SERVICE + "ModelInfer", frame(infer_request("no_such_model", [("image", X[:1])])
                                                            .SerializeToString()), GRPC_HEADERS)
    assert missing.fields.get(":status") == "200" and missing.grpc_status == 5, missing.output
    assert "no_such_model" in missing.fields.get("grpc-message", ""), missing.output


def test_wire_grpc_message_is_percent_encoded(server):
    name = "mod\u00e8le-50%"
    response = nghttp(grpc_address(server), SERVICE + "ModelInfer",
                      frame(infer_request(name, [("image", X[:1])]).SerializeToString()), GRPC_HEADERS)
    assert response.grpc_status == 5, response.output
    message = response.fields.get("grpc-message", "")
    assert message.isascii() and "mod%C3%A8le-50%25" in message, message


def test_wire_half_closed_client_gets_its_answer(server):
    """Raw HTTP/2: a ModelInfer call (answered later, from a compute worker), then the client
    shuts down its sending side; the answer still arrives, then the server ends the connection."""
    def frame_bytes(kind, flags, stream, payload):
        return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload

    def literal(name, value):  # HPACK literal header field without indexing, new name
        return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value
    fields = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", SERVICE.encode() + b"ModelInfer"),
              (b":authority", b"x"), (b"content-type", b"application/grpc"), (b"te", b"trailers")]
    request = (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame_bytes(4, 0, 0, b"")
               + frame_bytes(1, 0x4, 1, b"".join(literal(n, v) for n, v in fields))
               + frame_bytes(0, 0x1, 1, frame(infer_request("digits", [("image", X[:1])]).SerializeToString())))
    sock = socket.create_connection((HOST, server.grpc_port), timeout=10)
    sock.sendall(request)
    sock.shutdown(socket.SHUT_WR)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    assert b"logits" in data, data


def test_wire_other_codecs_are_unimplemented(server):
    """application/grpc+json and gRPC-Web are not protobuf: UNIMPLEMENTED, not a parse attempt."""
    body = frame(b"")
    for content_type in ("application/grpc+json", "application/grpc-web"):
        response = nghttp(grpc_address(server), SERVICE + "ServerLive", body, {**GRPC_HEADERS, "content-type": content_type})
        assert response.grpc_status == 12, (content_type, response.output)
    ok = nghttp(grpc_address(server), SERVICE + "ServerLive", body, {**GRPC_HEADERS, "content-type": "application/grpc+proto"})
    assert ok.grpc_status == 0, ok.output


def test_wire_compressed_messages_that_cannot_be_decoded(server):
    """An unknown grpc-encoding is UNIMPLEMENTED; corrupt or unlabelled compressed data INTERNAL."""
    import gzip
    live = gzip.compress(b"")
    for data, headers, status in [(live, {"grpc-encoding": "snappy"}, 12), (live[:-3], {"grpc-encoding": "gzip"}, 13),
                                  (live, {}, 13), (live, {"grpc-encoding": "gzip"}, 0)]:
        response = nghttp(grpc_address(server), SERVICE + "ServerLive", frame(data, compressed=True), {**GRPC_HEADERS, **headers})
        assert response.grpc_status == status, (headers, response.output)


# --------------------------------------------------------------------------- large messages, many streams

def test_32_mib_request_and_response(server, triton):
    x = np.random.default_rng(9).standard_normal(8 * MiB).astype(np.float32)  # 32 MiB
    result = triton.infer("echo", [triton_input("x", x)], client_timeout=120)
    assert_equal_arrays(result.as_numpy("y"), x)
    assert_close(triton.infer("digits", [triton_input("image", X[:1])]).as_numpy("logits"), digits_reference(X[:1]))


def test_large_transfer_does_not_stall_small_calls_on_the_same_connection(server, stub):
    """Flow control per stream: while a 60 MiB request and its 60 MiB answer move on one
    connection, small calls on that connection are answered in between."""
    big = np.random.default_rng(11).standard_normal(15 * MiB).astype(np.float32)  # 60 MiB
    future = stub.ModelInfer.future(infer_request("echo", [("x", big)]), timeout=120)
    small_done_first = 0
    for i in range(40):
        x = X[i % len(X):i % len(X) + 1]
        answer = stub.ModelInfer(infer_request("digits", [("image", x)]), timeout=RPC_TIMEOUT)
        assert_close(response_arrays(answer)["logits"], digits_reference(x))
        if not future.done():
            small_done_first += 1
    assert_equal_arrays(response_arrays(future.result())["y"], big)
    assert small_done_first > 0, "every small call waited for the 60 MiB transfer"


def test_message_over_64_mib_is_resource_exhausted(server, stub):
    request = infer_request("echo", [("x", np.ones((MAX_MESSAGE + 4 * MiB) // 4, np.float32))])
    assert request.ByteSize() > MAX_MESSAGE
    expect_status(StatusCode.RESOURCE_EXHAUSTED, stub.ModelInfer, request, timeout=120)
    assert_close(response_arrays(stub.ModelInfer(infer_request("digits", [("image", X[:1])]), timeout=RPC_TIMEOUT))
                 ["logits"], digits_reference(X[:1]))


def test_200_concurrent_streams_on_one_connection(server, address):
    rng = np.random.default_rng(17)
    inputs = [rng.uniform(0, 1, [1 + i % 3, 1, 8, 8]).astype(np.float32) for i in range(200)]
    chan = channel(address)
    try:
        stub = Stub(chan)
        futures = [stub.ModelInfer.future(infer_request("digits", [("image", x)], request_id=str(i)), timeout=120)
                   for i, x in enumerate(inputs)]
        responses = [future.result() for future in futures]
    finally:
        chan.close()
    for i, (x, response) in enumerate(zip(inputs, responses)):
        assert response.id == str(i)
        assert_close(response_arrays(response, raw_expected=True)["logits"], digits_reference(x))


def test_h2load_model_infer(server, tmp_path):
    """h2load: 200 ModelInfer calls, 4 connections x 8 streams, on both ports; h2load counts
    HTTP 200s (a gRPC error is a 200 too), so the server's executed batches are counted as
    well: digits has no batching, each one-row call runs as one batch of size 1."""
    body = tmp_path / "infer.bin"
    body.write_bytes(frame(infer_request("digits", [("image", X[3:4])]).SerializeToString()))
    check = nghttp(grpc_address(server), SERVICE + "ModelInfer", body.read_bytes(), GRPC_HEADERS)
    assert check.grpc_status == 0, check.output
    for address in (grpc_address(server), rest_address(server)):
        before = batch_sizes(server, "digits").get(1, 0)
        counts, output = h2load(address, SERVICE + "ModelInfer", body)
        assert counts["succeeded"] == 200 and counts["failed"] == 0 and counts["errored"] == 0, (address, output)
        assert counts.get("timeout", 0) == 0, (address, output)
        wait_for(lambda: batch_sizes(server, "digits").get(1, 0) - before >= 200, 10, "200 executions counted")
        assert batch_sizes(server, "digits").get(1, 0) - before == 200


# --------------------------------------------------------------------------- deadlines, cancellation, queues

@pytest.fixture
def slow_server(server_factory, tmp_path):
    """The slow model alone on one compute thread: requests run one after the other, so a
    request sent while a long one computes waits in the queue."""
    repository = tmp_path / "repository"
    make_model_dir(repository / "slow", {1: slow_bytes()})
    return server_factory.start("--model_repository", repository, "--compute_threads", "1")


def slow_input(rows, seed):
    return np.random.default_rng(seed).standard_normal((rows, 1024)).astype(np.float32)


def calibrated_rows(stub):
    """Rows that keep the slow model busy for at least 1 s on this machine."""
    def infer_seconds(rows):
        started = time.monotonic()
        response = stub.ModelInfer(infer_request("slow", [("x", slow_input(rows, 0))]), timeout=120)
        assert list(response.outputs[0].shape) == [rows, 1024]
        return time.monotonic() - started
    rows, _ = calibrate_slow(infer_seconds, target=1.0)
    return rows


def test_client_deadline_drops_the_queued_request(slow_server):
    server = slow_server
    chan = channel(grpc_address(server))
    try:
        stub = Stub(chan)
        rows = calibrated_rows(stub)
        busy = stub.ModelInfer.future(infer_request("slow", [("x", slow_input(rows, 1))]), timeout=120)
        wait_for(lambda: in_flight(server) >= 1, 10, "the busy request is in flight")
        time.sleep(0.1)  # decoded and computing (it lasts >= 1 s)
        started = time.monotonic()
        expect_status(StatusCode.DEADLINE_EXCEEDED, stub.ModelInfer,
                      infer_request("slow", [("x", slow_input(3, 2))]), timeout=0.3)
        assert time.monotonic() - started < 3  # the client's own deadline, with room for a loaded machine
        assert_close(response_arrays(busy.result())["echo"], slow_input(rows, 1))
        time.sleep(0.5)
        assert 3 not in batch_sizes(server, "slow"), f"the expired request ran: {batch_sizes(server, 'slow')}"
        x = slow_input(2, 3)
        assert_close(response_arrays(stub.ModelInfer(infer_request("slow", [("x", x)]), timeout=RPC_TIMEOUT))["echo"], x)
        assert batch_sizes(server, "slow").get(2) == 1
    finally:
        chan.close()


def test_server_honours_grpc_timeout(slow_server):
    """nghttp enforces no deadline itself: DEADLINE_EXCEEDED here comes from the server."""
    server = slow_server
    chan = channel(grpc_address(server))
    try:
        stub = Stub(chan)
        rows = calibrated_rows(stub)
        body = frame(infer_request("slow", [("x", slow_input(3, 2))]).SerializeToString())
        busy = stub.ModelInfer.future(infer_request("slow", [("x", slow_input(rows, 1))]), timeout=120)
        wait_for(lambda: in_flight(server) >= 1, 10, "the busy request is in flight")
        time.sleep(0.1)  # decoded and computing (it lasts >= 1 s)
        expired = nghttp(grpc_address(server), SERVICE + "ModelInfer", body, {**GRPC_HEADERS, "grpc-timeout": "300m"})
        assert expired.grpc_status == 4, expired.output  # instead of an answer once the busy request is done
        assert expired.seconds < 10, expired.seconds
        busy.result()
        time.sleep(0.5)
        assert 3 not in batch_sizes(server, "slow"), f"the expired request ran: {batch_sizes(server, 'slow')}"
        relaxed = nghttp(grpc_address(server), SERVICE + "ModelInfer", body, {**GRPC_HEADERS, "grpc-timeout": "20S"})
        assert relaxed.grpc_status == 0, relaxed.output
        assert batch_sizes(server, "slow").get(3) == 1
    finally:
        chan.close()


def test_cancelled_request_is_dropped_and_server_stays_healthy(slow_server):
    server = slow_server
    chan = channel(grpc_address(server))
    try:
        stub = Stub(chan)
        rows = calibrated_rows(stub)
        before = batch_sizes(server, "slow")
        busy = stub.ModelInfer.future(infer_request("slow", [("x", slow_input(rows, 1))]), timeout=120)
        wait_for(lambda: in_flight(server) >= 1, 10, "the busy request is in flight")
        time.sleep(0.1)  # decoded and computing (it lasts >= 1 s)
        victim = stub.ModelInfer.future(infer_request("slow", [("x", slow_input(3, 2))]), timeout=120)
        wait_for(lambda: in_flight(server) >= 2, 10, "the victim is queued behind it")
        assert victim.cancel(), "the queued call had already finished"
        with pytest.raises(grpc.FutureCancelledError):
            victim.result()
        response = busy.result()
        assert_close(response_arrays(response)["echo"], slow_input(rows, 1))
        time.sleep(0.5)
        after = batch_sizes(server, "slow")
        assert after.get(3, 0) == before.get(3, 0), f"the cancelled request ran: {before} -> {after}"
        wait_for(lambda: in_flight(server) == 0, 10, "no request in flight")
        x = slow_input(2, 3)
        response = stub.ModelInfer(infer_request("slow", [("x", x)]), timeout=RPC_TIMEOUT)
        outputs = response_arrays(response)
        assert_close(outputs["echo"], x)
        np.testing.assert_allclose(outputs["y"], reference(slow_bytes(), {"x": x})["y"], atol=1e-3, rtol=1e-3)
    finally:
        chan.close()


def test_full_queue_is_resource_exhausted(server_factory, tmp_path, keras_models):
    repository = tmp_path / "repository"
    model = mobilenet_bytes(keras_models)
    make_model_dir(repository / "mobilenet", {1: model})
    (repository / "mobilenet" / "config.pbtxt").write_text(
        'max_batch_size: 2\ndynamic_batching { default_queue_policy { max_queue_size: 1 } }\n')
    server = server_factory.start("--model_repository", repository, "--compute_threads", "1")
    x = np.load(keras_models / "mobilenet_v2" / "input_b1.npy").astype(np.float32)
    expected = reference(model, {"input": x})["predictions"]
    chan = channel(grpc_address(server))
    try:
        stub = Stub(chan)
        futures = [stub.ModelInfer.future(infer_request("mobilenet", [("input", x)]), timeout=120) for _ in range(48)]
        codes = []
        for future in futures:
            try:
                assert_close(response_arrays(future.result())["predictions"], expected)
                codes.append(StatusCode.OK)
            except grpc.RpcError as error:
                codes.append(error.code())
                assert error.code() == StatusCode.RESOURCE_EXHAUSTED, error
                assert "queue" in error.details().lower(), error.details()
        assert StatusCode.OK in codes and StatusCode.RESOURCE_EXHAUSTED in codes, codes
        assert_close(response_arrays(stub.ModelInfer(infer_request("mobilenet", [("input", x)]), timeout=RPC_TIMEOUT))
                     ["predictions"], expected)
    finally:
        chan.close()
    assert 'model_server_queue_rejected_total{model="mobilenet"}' in server.get("/metrics").text


def test_grpc_and_rest_requests_share_batches(server_factory, tmp_path):
    repository = tmp_path / "repository"
    make_model_dir(repository / "digits", {1: digits_bytes()})
    (repository / "digits" / "config.pbtxt").write_text(
        "max_batch_size: 16\ndynamic_batching { max_queue_delay_microseconds: 3000 }\n")
    make_model_dir(repository / "slow", {1: slow_bytes()})
    server = server_factory.start("--model_repository", repository, "--compute_threads", "1")
    rng = np.random.default_rng(23)
    grpc_inputs = [rng.uniform(0, 1, [1 + i % 3, 1, 8, 8]).astype(np.float32) for i in range(120)]
    rest_inputs = [rng.uniform(0, 1, [1 + i % 2, 1, 8, 8]).astype(np.float32) for i in range(120)]
    chan = channel(grpc_address(server))
    try:
        stub = Stub(chan)
        # The digits model runs in microseconds: requests queue (and so combine) only behind a
        # long request of another model holding the one shared compute thread.
        busy = stub.ModelInfer.future(infer_request("slow", [("x", slow_input(calibrated_rows(stub), 1))]), timeout=120)
        wait_for(lambda: in_flight(server) >= 1, 10, "the long request is in flight")
        time.sleep(0.1)  # decoded and computing (it lasts >= 1 s)
        with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
            rest_results = pool.map(lambda x: server.post("/v2/models/digits/infer", json=v2_json_request(x)),
                                    rest_inputs)
            grpc_futures = [stub.ModelInfer.future(infer_request("digits", [("image", x)]), timeout=120)
                            for x in grpc_inputs]
            rest_results = list(rest_results)
        busy.result()
        for x, future in zip(grpc_inputs, grpc_futures):
            assert_close(response_arrays(future.result())["logits"], digits_reference(x))
    finally:
        chan.close()
    for x, response in zip(rest_inputs, rest_results):
        assert response.status_code == 200, response.text
        assert_close(v2_output(response.json(), "logits"), digits_reference(x))
    sizes = batch_sizes(server, "digits")
    rows = sum(x.shape[0] for x in grpc_inputs + rest_inputs)
    assert sum(size * count for size, count in sizes.items()) == rows, sizes
    assert max(sizes) > 3, f"no batch combined several requests: {sizes}"


# --------------------------------------------------------------------------- lifecycle

def test_sigterm_lets_in_flight_grpc_requests_finish(server_factory, tmp_path):
    repository = tmp_path / "repository"
    make_model_dir(repository / "slow", {1: slow_bytes()})
    server = server_factory.start("--model_repository", repository, "--compute_threads", "1")
    chan = channel(grpc_address(server))
    try:
        stub = Stub(chan)
        rows = max(1, calibrated_rows(stub) // 2)  # about 0.5 s each
        inputs = [slow_input(rows, 100 + i) for i in range(4)]
        futures = [stub.ModelInfer.future(infer_request("slow", [("x", x)], request_id=str(i)), timeout=120)
                   for i, x in enumerate(inputs)]
        wait_for(lambda: in_flight(server) == 4, 10, "all four requests received")
        server.send_signal(signal.SIGTERM)
        for i, (x, future) in enumerate(zip(inputs, futures)):
            response = future.result()
            assert response.id == str(i)
            assert_close(response_arrays(response)["echo"], x)
    finally:
        chan.close()
    code = server.wait_exit(STOP_TIMEOUT)
    assert code == 0, f"exit code {code} after SIGTERM\n{server.describe()}"


def _port_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
        return True


def test_default_ports_8500_grpc_and_8501_rest(model_server_binary, tmp_path):
    base = make_model_dir(tmp_path / "digits", {1: digits_bytes()})
    wait_for(lambda: _port_free(8500) and _port_free(8501), 60, "ports 8500 and 8501 to be free for this test")
    with open(tmp_path / "stderr.log", "wb") as stderr:
        process = subprocess.Popen([str(model_server_binary), "--model_name", "digits", "--model_base_path", str(base)],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, cwd=tmp_path)
    try:
        def rest_ready():
            try:
                with socket.create_connection((HOST, 8501), timeout=2) as sock:
                    sock.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    return sock.recv(64).startswith(b"HTTP/1.1 200")
            except OSError:
                return process.poll() is not None
        wait_for(rest_ready, READY_TIMEOUT, "REST on 8501")
        assert process.poll() is None, (tmp_path / "stderr.log").read_text()
        client = triton_grpc.InferenceServerClient(f"{HOST}:8500")
        try:
            assert client.is_server_live()
            assert_close(client.infer("digits", [triton_input("image", X[:2])]).as_numpy("logits"),
                         digits_reference(X[:2]))
        finally:
            client.close()
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            code = "killed"
    assert code == 0, f"exit {code}\n{(tmp_path / 'stderr.log').read_text()[-3000:]}"


# --------------------------------------------------------------------------- memory budget

def test_memory_budget_refuses_bodies_past_it_on_every_port(server_factory, tmp_path):
    """--max_buffered_bytes bounds the request bytes held at once over all connections of both
    ports: while one client holds 800 KB of an unfinished body, a 256 KB request gets 503 over
    HTTP/1.1 and h2c and RESOURCE_EXHAUSTED over gRPC (each says retry); once the holder is gone
    the same requests are served."""
    base = make_model_dir(tmp_path / "digits", {1: digits_bytes()})
    server = server_factory.start(*base_path_args("digits", base), "--max_buffered_bytes", str(1 << 20))
    x = np.repeat(X, 100, axis=0)  # [1000, 1, 8, 8]: 256,000 bytes of FP32
    body, json_length = v2_binary_request([("image", x)])
    request = http_request_bytes("POST", "/v2/models/digits/infer", body, {"Inference-Header-Content-Length": json_length})

    def rest_status():
        with raw_connect(server) as sock:
            sock.sendall(request)
            response = RawReader(sock).read_response()
            return response.status, response.body

    def grpc_status(target):
        client = triton_grpc.InferenceServerClient(target)
        try:
            client.infer("digits", [triton_input("image", x)])
            return "OK", ""
        except InferenceServerException as error:
            return error.status(), error.message()
        finally:
            client.close()

    def h2c_status():
        with tempfile.NamedTemporaryFile() as data:
            data.write(body)
            data.flush()
            result = subprocess.run(["nghttp", "-v", f"--data={data.name}", "-H", f"inference-header-content-length: {json_length}",
                                     f"http://{HOST}:{server.rest_port}/v2/models/digits/infer"], capture_output=True, timeout=60)
        return re.findall(r":status: (\d+)", result.stdout.decode()), result.stdout.decode()[-2000:]

    def hold():
        """A connection holding 800 KB of a 900 KB body, read by the server by the time it returns."""
        sock = raw_connect(server)
        sock.sendall(b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 900000\r\n\r\n" + b"{" * 800_000)
        time.sleep(0.5)
        return sock

    def refused_while_held():
        # A request racing the holder's bytes may win, and the holder is then the one refused
        # (answered and closed): hold again.
        nonlocal holder
        if select.select([holder], [], [], 0)[0]:
            holder.close()
            holder = hold()
        return rest_status()[0] == 503

    assert rest_status()[0] == 200
    holder = hold()
    try:
        wait_for(refused_while_held, 30, "a 503 while the budget is held")
        status, message = rest_status()
        assert status == 503 and b"retry" in message, (status, message)
        status, message = grpc_status(grpc_address(server))
        assert status == "StatusCode.RESOURCE_EXHAUSTED" and "retry" in message, (status, message)
        statuses, output = h2c_status()
        assert statuses == ["503"], output
        # A declared body that cannot fit is refused at its head, before 100 Continue.
        with raw_connect(server) as sock:
            sock.sendall(b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                         b"Content-Length: 300000\r\n\r\n")
            response = RawReader(sock).read_response(skip_interim=False)
            assert response.status == 503, (response.status, response.body)
    finally:
        holder.close()
    # The holder's connection is closed: its bytes are given back.
    wait_for(lambda: rest_status()[0] == 200, 20, "the budget to be given back")
    assert grpc_status(grpc_address(server))[0] == "OK"
    assert h2c_status()[0] == ["200"]
