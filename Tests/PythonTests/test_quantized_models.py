"""INT8 models end to end: InceptionV3, ResNet50 and MobileNetV2 quantized by onnxruntime's
quantize_static (QDQ and QOperator, per-channel and per-tensor weights, calibrated on real
photos; Tests/Fixtures/make_quantized_models.py) run by model-run must give onnxruntime's
answers, on every integer kernel path this CPU runs (ENGINE_INT8_KERNELS)."""
import json
import os
import pathlib
import subprocess

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from test_model_run import run

NETWORKS = ["inception_v3", "resnet50", "mobilenet_v2"]
VARIANTS = [f"{fmt}_{granularity}" for fmt in ("qdq", "qop") for granularity in ("per_channel", "per_tensor")]
# onnxruntime's QLinearAdd rescales with fixed-point multipliers (MLAS qladd) and its quantized
# pools round their own way, the engine rescales in float: an intermediate value may land one
# step apart, and later layers carry that to a step or two of the logits (MobileNetV2's ten
# residual adds: up to four). 99% of the outputs must still be within one step (see WITHIN_ONE_STEP), and top-1 equal.
MAX_STEPS = {"mobilenet_v2": 4}
DEFAULT_MAX_STEPS = 2
# Share of outputs within one step. MobileNetV2 QDQ per-channel: 83% (its residual adds).
WITHIN_ONE_STEP = {"mobilenet_v2": 0.75}


def quantized_root():
    cache = pathlib.Path(os.environ.get("MODEL_SERVER_CACHE", pathlib.Path.home() / ".cache/swift-model-server"))
    root = cache / "quantized"
    if not (root / "resnet50_qdq_per_channel" / "meta.json").exists():
        pytest.fail(f"no quantized models in {root}: run Tests/Fixtures/make_quantized_models.py (scripts/test.sh does)")
    return root


def output_step(model_path):
    """Scale of the quantization step of the model's (dequantized) output."""
    model = onnx.load(str(model_path))
    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.output[0] == model.graph.output[0].name:
            return float(constants[node.input[1]])
    pytest.fail("the model's output is not a DequantizeLinear")


def supported_paths(model_run, model):
    paths = []
    for path in ("vnni", "avx2", "scalar"):
        result = subprocess.run([str(model_run), str(model)], env={**os.environ, "ENGINE_INT8_KERNELS": path},
                                capture_output=True, text=True, timeout=600)
        if "does not run" not in result.stderr:
            paths.append(path)
    return paths


def compare(ours, reference, step, network):
    assert ours.shape == reference.shape and ours.dtype == np.float32
    difference = np.abs(ours.astype(np.float64) - reference)
    steps = difference / step
    assert steps.max() <= MAX_STEPS.get(network, DEFAULT_MAX_STEPS) + 1e-3, f"{steps.max():.2f} steps off onnxruntime"
    assert (steps <= 1 + 1e-3).mean() >= WITHIN_ONE_STEP.get(network, 0.99)
    assert (ours.argmax(-1) == reference.argmax(-1)).all()


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("network", NETWORKS)
def test_matches_onnxruntime(model_run, tmp_path, network, variant, batch, threads):
    directory = quantized_root() / f"{network}_{variant}"
    output = tmp_path / "out.npy"
    run(model_run, directory / "model.onnx", "--input", directory / f"input_b{batch}.npy", "--output", output,
        "--threads", threads)
    compare(np.load(output), np.load(directory / f"output_b{batch}.npy"), output_step(directory / "model.onnx"), network)


@pytest.mark.parametrize("path", ["vnni", "avx2", "scalar"])
@pytest.mark.parametrize("variant", ["qdq_per_channel", "qop_per_tensor"])
@pytest.mark.parametrize("network", NETWORKS)
def test_every_kernel_path(model_run, tmp_path, network, variant, path):
    """Each integer kernel path (forced) gives the same answer as onnxruntime."""
    directory = quantized_root() / f"{network}_{variant}"
    env = {**os.environ, "ENGINE_INT8_KERNELS": path}
    output = tmp_path / "out.npy"
    args = [str(model_run), str(directory / "model.onnx"), "--input", str(directory / "input_b1.npy"), "--output", str(output)]
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
    if "does not run" in result.stderr:
        pytest.skip(f"this CPU does not run the {path} kernels")
    assert result.returncode == 0, result.stderr
    compare(np.load(output), np.load(directory / "output_b1.npy"), output_step(directory / "model.onnx"), network)


def test_unknown_kernel_path_is_refused(model_run):
    directory = quantized_root() / "mobilenet_v2_qop_per_tensor"
    result = subprocess.run([str(model_run), str(directory / "model.onnx")], env={**os.environ, "ENGINE_INT8_KERNELS": "sse9"},
                            capture_output=True, text=True, timeout=600)
    assert result.returncode != 0 and "ENGINE_INT8_KERNELS" in result.stderr


def test_profile_names_quantized_operators(model_run):
    directory = quantized_root() / "resnet50_qdq_per_channel"
    result = run(model_run, directory / "model.onnx", "--input", directory / "input_b1.npy", "--profile")
    assert "QLinearConv" in result.stdout + result.stderr
    assert "QLinearAdd" in result.stdout + result.stderr


def test_server_v2_infer_equals_model_run(model_run, server_factory, tmp_path):
    """An INT8 model is just another model: served over Open Inference Protocol V2 (binary
    tensors), a batch of 4 gets exactly model-run's answer (and onnxruntime's within a step)."""
    from server_fixtures import base_path_args, make_model_dir, v2_binary_request, v2_parse_response

    directory = quantized_root() / "resnet50_qdq_per_channel"
    base = make_model_dir(tmp_path / "models" / "resnet50_int8", {1: (directory / "model.onnx").read_bytes()})
    server = server_factory.start(*base_path_args("resnet50_int8", base))
    x = np.load(directory / "input_b4.npy")
    body, length = v2_binary_request([("input", x)], outputs=[{"name": "predictions", "parameters": {"binary_data": True}}])
    response = server.post("/v2/models/resnet50_int8/infer", data=body,
                           headers={"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(length)})
    assert response.status_code == 200, response.text[:500]
    _, arrays = v2_parse_response(response.content, response.headers)
    run(model_run, directory / "model.onnx", "--input", directory / "input_b4.npy", "--output", tmp_path / "y.npy")
    np.testing.assert_array_equal(arrays["predictions"], np.load(tmp_path / "y.npy"))
    compare(arrays["predictions"].copy(), np.load(directory / "output_b4.npy"), output_step(directory / "model.onnx"), "resnet50")
