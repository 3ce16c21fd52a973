"""docker/kserve-runtime.yaml: the model-server accepts exactly the arguments the
ClusterServingRuntime gives it (KServe substitutes {{.Name}} and mounts the model at
/mnt/models), and the kserve SDK's REST (V1 and V2) and gRPC (V2) clients reach the model."""
import asyncio
import numpy as np
import pytest
import yaml
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig

from server_fixtures import DIGITS_SAMPLES, ROOT, digits_bytes, digits_reference, make_model_dir

pytestmark = pytest.mark.timeout(300)


def runtime_arguments(name, model_dir):
    """The runtime's arguments with KServe's substitutions, minus the two port arguments (the
    test fixture gives the server free ports instead of 8080 and 9000)."""
    document = yaml.safe_load((ROOT / "docker" / "kserve-runtime.yaml").read_text())
    assert document["kind"] == "ClusterServingRuntime"
    spec = document["spec"]
    # Priority 3: KServe's default Triton (1) and OpenVINO (2) runtimes hold onnx v1's lower
    # priorities, and the webhook refuses a second runtime at the same one
    # (docker/check_kserve.py checks the rule against the default runtimes).
    assert {"name": "onnx", "version": "1", "autoSelect": True, "priority": 3} in spec["supportedModelFormats"]
    container = spec["containers"][0]
    assert container["command"] == ["/usr/local/bin/model-server"]
    arguments = [argument.replace("{{.Name}}", name).replace("/mnt/models", str(model_dir)) for argument in container["args"]]
    for port in ("--rest_api_port=8080", "--port=9000"):
        assert port in arguments, arguments
        arguments.remove(port)
    return arguments


def test_runtime_arguments_serve_the_kserve_clients(server_factory, tmp_path):
    model_dir = make_model_dir(tmp_path / "mnt-models", {1: digits_bytes()})
    server = server_factory.start(*runtime_arguments("digits", model_dir))
    rest_port, grpc_port = server.rest_port, server.grpc_port
    x = np.concatenate([np.load(DIGITS_SAMPLES / f"digit_{k}.npy") for k in (1, 4)]).astype(np.float32)
    expected = digits_reference(x)

    def v2_input():
        tensor = InferInput("image", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=False)
        return tensor

    async def run():
        rest = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
        v1_client = InferenceRESTClient(RESTConfig(protocol="v1", timeout=30))
        try:
            v2 = await rest.infer(f"http://127.0.0.1:{rest_port}", InferRequest(model_name="digits", infer_inputs=[v2_input()]),
                                  model_name="digits")
            v1 = await v1_client.infer(f"http://127.0.0.1:{rest_port}", {"instances": x.tolist()}, model_name="digits")
        finally:
            await rest.close()
            await v1_client.close()
        async with InferenceGRPCClient(f"127.0.0.1:{grpc_port}", timeout=30) as grpc_client:
            via_grpc = await grpc_client.infer(InferRequest(model_name="digits", infer_inputs=[v2_input()]))
        return v2, v1, via_grpc

    v2, v1, via_grpc = asyncio.run(run())
    np.testing.assert_allclose(v2.outputs[0].as_numpy(), expected, atol=1e-4, rtol=1e-3)
    np.testing.assert_allclose(np.asarray(v1["predictions"], np.float32), expected, atol=1e-4, rtol=1e-3)
    np.testing.assert_allclose(via_grpc.outputs[0].as_numpy(), expected, atol=1e-4, rtol=1e-3)
    assert server.get("/metrics").status_code == 200
