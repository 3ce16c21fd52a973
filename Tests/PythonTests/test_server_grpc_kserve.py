"""model-server driven by the KServe SDK's gRPC client (kserve.InferenceGRPCClient, grpc.aio,
with its default channel: no message size limits, retries on UNAVAILABLE, 60 s deadline
per call), on the gRPC port and on the REST port (HTTP/2 prior knowledge). Numpy inputs
travel in raw_input_contents, list inputs in typed contents; results equal onnxruntime's
and the REST path's. Runs in the main pytest process (where the KServe SDK is imported
anyway); tritonclient.grpc lives in test_server_grpc.py."""
import asyncio

import grpc
import numpy as np
import pytest
from kserve import InferenceGRPCClient, InferInput, InferRequest
from kserve.protocol.infer_type import RequestedOutput

from grpc_helpers import address, grpc_address, rest_address  # noqa: F401 (address: fixture)
from server_fixtures import (assert_close, digits_batch, digits_bytes, digits_reference, make_model_dir,
                             mobilenet_bytes, pair_bytes, reference, v2_json_request, v2_output)

pytestmark = pytest.mark.timeout(300)

X = digits_batch()


@pytest.fixture(scope="module")
def server(module_server_factory, tmp_path_factory):
    repository = tmp_path_factory.mktemp("repository")
    make_model_dir(repository / "digits", {1: digits_bytes()})
    make_model_dir(repository / "pair", {1: pair_bytes()})
    return module_server_factory.start("--model_repository", repository)


def kserve_grpc(address, method, *args, **kwargs):
    """One call of InferenceGRPCClient.<method> on a fresh client, as an application would."""
    async def run():
        async with InferenceGRPCClient(address, timeout=120) as client:
            return await getattr(client, method)(*args, **kwargs)
    return asyncio.run(run())


def digits_request(x, binary, request_id="kserve-grpc-1", outputs=None, model="digits"):
    if binary:
        tensor = InferInput("image", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=True)  # -> raw_input_contents
    else:
        tensor = InferInput("image", list(x.shape), "FP32", data=x.ravel().tolist())  # -> contents.fp32_contents
    return InferRequest(model_name=model, infer_inputs=[tensor], request_id=request_id, request_outputs=outputs)


def test_kserve_grpc_health(address):
    assert kserve_grpc(address, "is_server_live") is True
    assert kserve_grpc(address, "is_server_ready") is True
    assert kserve_grpc(address, "is_model_ready", "digits") is True


def test_kserve_grpc_unknown_model_ready(server):
    try:
        ready = kserve_grpc(grpc_address(server), "is_model_ready", "no_such_model")
    except grpc.aio.AioRpcError as error:  # Triton answers ready=false; NOT_FOUND is as clear
        assert error.code() == grpc.StatusCode.NOT_FOUND, error
    else:
        assert ready is False


@pytest.mark.parametrize("binary", [True, False], ids=["raw_input_contents", "typed-contents"])
def test_kserve_grpc_infer(server, address, binary):
    result = kserve_grpc(address, "infer", digits_request(X, binary))
    assert result.model_name == "digits" and result.model_version == "1" and result.id == "kserve-grpc-1"
    [output] = result.outputs
    assert output.name == "logits" and output.datatype == "FP32" and list(output.shape) == [10, 10]
    logits = output.as_numpy()
    assert_close(logits, digits_reference(X))
    rest = server.post("/v2/models/digits/infer", json=v2_json_request(X))
    assert rest.status_code == 200, rest.text
    np.testing.assert_array_equal(np.asarray(logits, np.float32), v2_output(rest.json(), "logits"))


def test_kserve_grpc_infer_two_inputs_output_subset(server):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.full((2, 3), 0.5, np.float32)
    inputs = []
    for name, value in (("a", a), ("b", b)):
        tensor = InferInput(name, list(value.shape), "FP32")
        tensor.set_data_from_numpy(value, binary_data=True)
        inputs.append(tensor)
    request = InferRequest(model_name="pair", infer_inputs=inputs, request_id="pair-1",
                           request_outputs=[RequestedOutput("sum")])
    result = kserve_grpc(grpc_address(server), "infer", request)
    assert [output.name for output in result.outputs] == ["sum"]
    assert_close(result.outputs[0].as_numpy(), a + b)


def test_kserve_grpc_infer_mobilenet(module_server_factory, tmp_path_factory, keras_models):
    repository = tmp_path_factory.mktemp("mobilenet")
    model = mobilenet_bytes(keras_models)
    make_model_dir(repository / "mobilenet", {1: model})
    server = module_server_factory.start("--model_repository", repository)
    x = np.load(keras_models / "mobilenet_v2" / "input_b4.npy").astype(np.float32)
    tensor = InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=True)
    result = kserve_grpc(grpc_address(server), "infer", InferRequest(model_name="mobilenet", infer_inputs=[tensor],
                                                                     request_id="m"))
    assert_close(result.outputs[0].as_numpy(), reference(model, {"input": x})["predictions"])


def test_kserve_grpc_errors(server):
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        kserve_grpc(grpc_address(server), "infer", digits_request(X[:1], True, model="no_such_model"))
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND and "no_such_model" in unknown.value.details()
    wrong = InferInput("image", [1, 1, 8, 7], "FP32")
    wrong.set_data_from_numpy(np.zeros((1, 1, 8, 7), np.float32), binary_data=True)
    with pytest.raises(grpc.aio.AioRpcError) as shape:
        kserve_grpc(grpc_address(server), "infer", InferRequest(model_name="digits", infer_inputs=[wrong], request_id="w"))
    assert shape.value.code() == grpc.StatusCode.INVALID_ARGUMENT and shape.value.details()
    assert kserve_grpc(grpc_address(server), "is_server_ready") is True


def test_kserve_grpc_concurrent_calls_on_one_channel(server):
    """64 concurrent grpc.aio calls on one client (one HTTP/2 connection), distinct inputs."""
    rng = np.random.default_rng(29)
    inputs = [rng.uniform(0, 1, [1 + i % 4, 1, 8, 8]).astype(np.float32) for i in range(64)]

    async def run():
        async with InferenceGRPCClient(grpc_address(server), timeout=120) as client:
            return await asyncio.gather(*[client.infer(digits_request(x, i % 2 == 0, request_id=str(i)))
                                          for i, x in enumerate(inputs)])
    results = asyncio.run(run())
    for i, (x, result) in enumerate(zip(inputs, results)):
        assert result.id == str(i)
        assert_close(result.outputs[0].as_numpy(), digits_reference(x))
