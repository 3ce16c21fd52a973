"""model-server driven by clients nobody here wrote: Triton's tritonclient.http (V2, JSON
and binary tensors, health, metadata, repository index) and KServe's SDK REST client
(InferenceRESTClient, protocols v1 and v2). Results equal onnxruntime's."""
import asyncio

import httpx
import numpy as np
import pytest
import tritonclient.http as triton_http
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import RequestedOutput
from tritonclient.utils import InferenceServerException

from server_fixtures import (assert_close, digits_batch, digits_bytes, digits_reference, make_model_dir,
                             mobilenet_bytes, reference)

pytestmark = pytest.mark.timeout(300)

X = digits_batch()


@pytest.fixture(scope="module")
def server(module_server_factory, tmp_path_factory, keras_models):
    """Triton layout: <repo>/digits/1/model.onnx and <repo>/mobilenet/1/model.onnx."""
    repository = tmp_path_factory.mktemp("repository")
    make_model_dir(repository / "digits", {1: digits_bytes()})
    make_model_dir(repository / "mobilenet", {1: mobilenet_bytes(keras_models)})
    return module_server_factory.start("--model_repository", repository)


@pytest.fixture
def triton(server):
    client = triton_http.InferenceServerClient(server.host_port, connection_timeout=10.0, network_timeout=120.0)
    yield client
    client.close()


@pytest.fixture(scope="module")
def mobilenet_case(keras_models):
    x = np.load(keras_models / "mobilenet_v2" / "input_b4.npy").astype(np.float32)
    return x, reference(mobilenet_bytes(keras_models), {"input": x})["predictions"]


# --------------------------------------------------------------------------- tritonclient.http

def test_triton_health(triton):
    assert triton.is_server_live()
    assert triton.is_server_ready()
    assert triton.is_model_ready("digits")
    assert triton.is_model_ready("digits", "1")
    assert triton.is_model_ready("mobilenet")
    assert not triton.is_model_ready("no_such_model")
    assert not triton.is_model_ready("digits", "9")


def test_triton_server_metadata(triton):
    metadata = triton.get_server_metadata()
    assert metadata["name"] and metadata["version"]
    assert "binary_tensor_data" in metadata["extensions"]


@pytest.mark.parametrize("version", ["", "1"])
def test_triton_model_metadata(triton, version):
    metadata = triton.get_model_metadata("digits", version)
    assert metadata["name"] == "digits"
    assert "1" in metadata["versions"]
    assert [(t["name"], t["datatype"], t["shape"]) for t in metadata["inputs"]] == [("image", "FP32", [-1, 1, 8, 8])]
    assert [(t["name"], t["datatype"], t["shape"]) for t in metadata["outputs"]] == [("logits", "FP32", [-1, 10])]


@pytest.mark.parametrize("binary_out", [True, False], ids=["out-binary", "out-json"])
@pytest.mark.parametrize("binary_in", [True, False], ids=["in-binary", "in-json"])
def test_triton_infer(triton, binary_in, binary_out):
    image = triton_http.InferInput("image", list(X.shape), "FP32")
    image.set_data_from_numpy(X, binary_data=binary_in)
    logits = triton_http.InferRequestedOutput("logits", binary_data=binary_out)
    result = triton.infer("digits", [image], outputs=[logits], request_id="triton-1")
    response = result.get_response()
    assert response["model_name"] == "digits" and response["model_version"] == "1"
    assert response["id"] == "triton-1"
    assert ("binary_data_size" in (response["outputs"][0].get("parameters") or {})) == binary_out
    assert_close(result.as_numpy("logits"), digits_reference(X))


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_triton_compressed_requests(triton, server, algorithm):
    """request_compression_algorithm: tritonclient sends Content-Encoding; the server inflates
    (and ignores Accept-Encoding: an uncompressed response is always acceptable)."""
    image = triton_http.InferInput("image", list(X.shape), "FP32")
    image.set_data_from_numpy(X, binary_data=True)
    result = triton.infer("digits", [image], request_compression_algorithm=algorithm,
                          response_compression_algorithm=algorithm)
    assert_close(result.as_numpy("logits"), digits_reference(X))


def test_unsupported_or_corrupt_content_encoding(server):
    import gzip
    body = gzip.compress(b'{"inputs": []}')
    response = httpx.post(f"http://{server.host_port}/v2/models/digits/infer", content=body,
                          headers={"Content-Encoding": "br"})
    assert response.status_code == 415 and "br" in response.json()["error"], response.text
    assert response.headers["Accept-Encoding"] == "gzip, deflate"
    response = httpx.post(f"http://{server.host_port}/v2/models/digits/infer", content=body[:-6],
                          headers={"Content-Encoding": "gzip"})
    assert response.status_code == 400 and "gzip" in response.json()["error"], response.text
    # 64 MiB of zeros in 64 KiB: decoding stops at the body limit.
    bomb = gzip.compress(bytes(65 << 20), compresslevel=9)
    response = httpx.post(f"http://{server.host_port}/v2/models/digits/infer", content=bomb,
                          headers={"Content-Encoding": "gzip"}, timeout=60)
    assert response.status_code == 413 and "exceeds" in response.json()["error"], response.text


def test_triton_infer_default_outputs_and_version(triton):
    """No outputs listed: tritonclient asks for binary_data_output = true."""
    image = triton_http.InferInput("image", [2, 1, 8, 8], "FP32")
    image.set_data_from_numpy(X[:2])
    result = triton.infer("digits", [image], model_version="1")
    assert result.get_response()["model_version"] == "1"
    assert_close(result.as_numpy("logits"), digits_reference(X[:2]))


def test_triton_infer_mobilenet_binary(triton, mobilenet_case):
    x, expected = mobilenet_case
    image = triton_http.InferInput("input", list(x.shape), "FP32")
    image.set_data_from_numpy(x, binary_data=True)
    result = triton.infer("mobilenet", [image],
                          outputs=[triton_http.InferRequestedOutput("predictions", binary_data=True)])
    assert_close(result.as_numpy("predictions"), expected)


def test_triton_errors_carry_status_and_message(triton):
    image = triton_http.InferInput("image", [1, 1, 8, 8], "FP32")
    image.set_data_from_numpy(X[:1])
    with pytest.raises(InferenceServerException) as unknown:
        triton.infer("no_such_model", [image])
    assert unknown.value.status() == "404" and "no_such_model" in unknown.value.message()
    wrong = triton_http.InferInput("image", [1, 1, 8, 7], "FP32")
    wrong.set_data_from_numpy(np.zeros((1, 1, 8, 7), np.float32))
    with pytest.raises(InferenceServerException) as shape:
        triton.infer("digits", [wrong])
    assert shape.value.status() == "400" and shape.value.message()
    assert triton.is_server_ready()


def test_triton_repository_index(triton):
    index = triton.get_model_repository_index()
    states = {entry["name"]: entry["state"] for entry in index}
    assert states == {"digits": "READY", "mobilenet": "READY"}, index


# --------------------------------------------------------------------------- KServe SDK, protocol v1

def kserve_call(protocol, method, *args, **kwargs):
    async def run():
        client = InferenceRESTClient(RESTConfig(protocol=protocol, timeout=120))
        try:
            return await getattr(client, method)(*args, **kwargs)
        finally:
            await client.close()
    return asyncio.run(run())


def test_kserve_v1_liveness_and_model_ready(server):
    assert kserve_call("v1", "is_server_live", server.base_url) is True
    assert kserve_call("v1", "is_model_ready", server.base_url, "digits") is True


def test_kserve_v1_predict_instances(server):
    result = kserve_call("v1", "infer", server.base_url, {"instances": X.tolist()}, model_name="digits")
    assert_close(result["predictions"], digits_reference(X))


def test_kserve_v1_predict_inputs(server):
    result = kserve_call("v1", "infer", server.base_url, {"inputs": X[:3].tolist()}, model_name="digits")
    assert_close(result["outputs"], digits_reference(X[:3]))


def test_kserve_v1_unknown_model(server):
    with pytest.raises(httpx.HTTPStatusError) as error:
        kserve_call("v1", "infer", server.base_url, {"instances": X[:1].tolist()}, model_name="no_such_model")
    assert error.value.response.status_code == 404
    assert "no_such_model" in error.value.response.json()["error"]
    with pytest.raises(httpx.HTTPStatusError) as ready:
        kserve_call("v1", "is_model_ready", server.base_url, "no_such_model")
    assert ready.value.response.status_code == 404


# --------------------------------------------------------------------------- KServe SDK, protocol v2

def test_kserve_v2_health(server):
    assert kserve_call("v2", "is_server_live", server.base_url) is True
    assert kserve_call("v2", "is_server_ready", server.base_url) is True
    assert kserve_call("v2", "is_model_ready", server.base_url, "digits") is True
    assert kserve_call("v2", "is_model_ready", server.base_url, "no_such_model") is False


def _kserve_request(model, name, x, binary, outputs=None):
    tensor = InferInput(name, list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    return InferRequest(model_name=model, infer_inputs=[tensor], request_id="kserve-1", request_outputs=outputs)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_kserve_v2_infer(server, binary):
    outputs = [RequestedOutput("logits", parameters={"binary_data": binary})]
    result = kserve_call("v2", "infer", server.base_url, _kserve_request("digits", "image", X, binary, outputs),
                         model_name="digits")
    assert result.model_name == "digits" and result.id == "kserve-1"
    [output] = result.outputs
    assert output.name == "logits" and output.shape == [10, 10]
    assert_close(output.as_numpy(), digits_reference(X))


def test_kserve_v2_infer_mobilenet_binary(server, mobilenet_case):
    x, expected = mobilenet_case
    outputs = [RequestedOutput("predictions", parameters={"binary_data": True})]
    result = kserve_call("v2", "infer", server.base_url, _kserve_request("mobilenet", "input", x, True, outputs),
                         model_name="mobilenet")
    assert_close(result.outputs[0].as_numpy(), expected)


def test_kserve_v2_unknown_model(server):
    with pytest.raises(httpx.HTTPStatusError) as error:
        kserve_call("v2", "infer", server.base_url, _kserve_request("no_such_model", "image", X[:1], False),
                    model_name="no_such_model")
    assert error.value.response.status_code == 404
    assert "no_such_model" in error.value.response.json()["error"]
