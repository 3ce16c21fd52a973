"""JPEG in, end to end: the server's scores for JPEGs of different sizes equal onnxruntime
run on the tensor a reference preprocessing in Python produces (Pillow decode and resize,
normalisation in NumPy: Tests/PythonTests/image_reference.py); top-1 identical. Bad images
get a 400 naming the problem."""
import base64
import io
import json

import numpy as np
from PIL import Image

from image_reference import reference_preprocess
from server_fixtures import make_model_dir, mobilenet_bytes, reference

# Scores are logits of a random network: compare them with a tolerance on the logit scale.
ATOL = 2e-3
RTOL = 2e-3

CONFIG = {"width": 224, "height": 224, "channels": 3, "layout": "nhwc", "resize": {"shorter_side": 256},
          "scale": 1 / 127.5, "mean": [1.0], "std": [1.0]}


def jpeg(width, height, seed, quality=90):
    """A smooth synthetic photo-like image with noise, as JPEG bytes."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([128 + 100 * np.sin(x / (17 + 3 * c) + y / (23 + 5 * c) + seed) for c in range(3)], axis=-1)
    image += rng.normal(0, 12, image.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def start(server_factory, tmp_path, keras_models):
    repository = tmp_path / "repo"
    make_model_dir(repository / "mobilenet", {1: mobilenet_bytes(keras_models)})
    (repository / "mobilenet" / "config.pbtxt").write_text("\n".join([
        "max_batch_size: 8",
        "dynamic_batching { max_queue_delay_microseconds: 1000 }",
        'parameters { key: "image_input" value { string_value: "input" } }',
        'parameters { key: "image_resize" value { string_value: "shorter_side:256" } }',
        'parameters { key: "image_scale" value { string_value: "%r" } }' % CONFIG["scale"],
        'parameters { key: "image_mean" value { string_value: "1" } }',
        'parameters { key: "image_max_pixels" value { string_value: "4000000" } }',
    ]) + "\n")
    return server_factory.start("--model_repository", str(repository))


SIZES = [(1920, 1080), (640, 480), (300, 500), (224, 224), (97, 130)]


def test_jpegs_match_reference_preprocessing(server_factory, tmp_path, keras_models):
    server = start(server_factory, tmp_path, keras_models)
    model = mobilenet_bytes(keras_models)
    images = [jpeg(w, h, seed) for seed, (w, h) in enumerate(SIZES)]
    expected = reference(model, {"input": np.stack([reference_preprocess(data, CONFIG) for data in images]).astype(np.float32)})["predictions"]
    # V1 with {"b64": ...} instances, all in one request.
    body = {"instances": [{"b64": base64.b64encode(data).decode()} for data in images]}
    response = server.post("/v1/models/mobilenet:predict", json=body)
    assert response.status_code == 200, response.text
    ours = np.asarray(response.json()["predictions"], dtype=np.float32)
    np.testing.assert_allclose(ours, expected, atol=ATOL, rtol=RTOL)
    assert (ours.argmax(1) == expected.argmax(1)).all()
    # The classic Inception client's {"image_bytes": {"b64": ...}} and a raw image/jpeg body.
    single = server.post("/v1/models/mobilenet:predict", json={"instances": [{"image_bytes": {"b64": base64.b64encode(images[1]).decode()}}]})
    np.testing.assert_allclose(single.json()["predictions"][0], expected[1], atol=ATOL, rtol=RTOL)
    raw = server.post("/v2/models/mobilenet/infer", data=images[2], headers={"Content-Type": "image/jpeg"})
    assert raw.status_code == 200, raw.text
    np.testing.assert_allclose(np.asarray(raw.json()["outputs"][0]["data"]).reshape(1, -1)[0], expected[2], atol=ATOL, rtol=RTOL)


def test_v2_bytes_tensor_with_binary_extension(server_factory, tmp_path, keras_models):
    server = start(server_factory, tmp_path, keras_models)
    model = mobilenet_bytes(keras_models)
    images = [jpeg(800, 600, 11), jpeg(333, 222, 12)]
    payload = b"".join(len(data).to_bytes(4, "little") + data for data in images)
    header = json.dumps({"inputs": [{"name": "input", "shape": [2], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": len(payload)}}]}).encode()
    response = server.post("/v2/models/mobilenet/infer", data=header + payload,
                           headers={"Inference-Header-Content-Length": str(len(header))})
    assert response.status_code == 200, response.text
    ours = np.asarray(response.json()["outputs"][0]["data"], dtype=np.float32).reshape(2, -1)
    expected = reference(model, {"input": np.stack([reference_preprocess(d, CONFIG) for d in images]).astype(np.float32)})["predictions"]
    np.testing.assert_allclose(ours, expected, atol=ATOL, rtol=RTOL)


def test_bad_images_get_400_naming_the_problem(server_factory, tmp_path, keras_models):
    server = start(server_factory, tmp_path, keras_models)
    good = jpeg(320, 240, 5)
    png = io.BytesIO()
    Image.new("RGB", (10, 10)).save(png, format="PNG")
    cases = [
        (b"not an image at all", "not a JPEG"),
        (png.getvalue(), "PNG"),
        (good[: len(good) // 2], ""),
        (jpeg(2100, 2000, 6, quality=50), "pixels"),
    ]
    for data, fragment in cases:
        response = server.post("/v1/models/mobilenet:predict", json={"instances": [{"b64": base64.b64encode(data).decode()}]})
        assert response.status_code == 400, (fragment, response.text)
        assert fragment in response.json()["error"], response.text
    ok = server.post("/v1/models/mobilenet:predict", json={"instances": [{"b64": base64.b64encode(good).decode()}]})
    assert ok.status_code == 200, ok.text
