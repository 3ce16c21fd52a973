"""ImageCodec (through the release `image-bench`, $IMAGE_BENCH) against the Pillow reference
in image_reference.py: geometry, DCT reduction, channels, layout, dtype, CMYK, and the
rejections (not a JPEG, truncated, too many pixels) with their messages."""
import io
import os
import pathlib
import subprocess

import numpy as np
import pytest
from PIL import Image

from image_reference import reference_preprocess, tolerance


@pytest.fixture(scope="session")
def image_bench():
    value = os.environ.get("IMAGE_BENCH")
    if not value:
        pytest.fail("IMAGE_BENCH is not set: path of the release image-bench binary (run scripts/test.sh)")
    path = pathlib.Path(value)
    assert path.is_file(), f"{path} does not exist"
    return path


def synthetic(width, height, seed=0, noise=8.0):
    """Smooth colour fields, edges and noise: exercises every filter tap."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = x / width, y / height
    image = np.stack([
        128 + 110 * np.sin(2 * np.pi * (3 * u + v)),
        128 + 100 * np.cos(2 * np.pi * (4 * v - u)),
        255 * ((x // 16 + y // 16) % 2),
    ], axis=-1)
    image += rng.normal(0, noise, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def jpeg(width, height, mode="RGB", seed=0, **save):
    pixels = synthetic(width, height, seed)
    image = Image.fromarray(pixels)
    if mode == "L":
        image = image.convert("L")
    elif mode == "CMYK":
        image = image.convert("CMYK")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=save.pop("quality", 92), **save)
    return buffer.getvalue()


def bench_args(config):
    args = ["--width", str(config["width"]), "--height", str(config["height"])]
    args += ["--channels", str(config.get("channels", 3)), "--order", config.get("channel_order", "rgb")]
    args += ["--layout", config.get("layout", "nhwc"), "--dtype", config.get("dtype", "float32")]
    resize = config.get("resize", "stretch")
    if resize != "stretch":
        (mode, value), = resize.items()
        resize = {"shorter_side": "shorter", "center_crop_fraction": "fraction", "letterbox": "letterbox"}[mode]
        resize = f"{resize}:{value}"
    args += ["--resize", resize]
    args += ["--scale", repr(float(config.get("scale", 1.0)))]
    args += ["--mean", ",".join(repr(float(m)) for m in config.get("mean", [0.0]))]
    args += ["--std", ",".join(repr(float(s)) for s in config.get("std", [1.0]))]
    if "max_pixels" in config:
        args += ["--max-pixels", str(config["max_pixels"])]
    return args


def run_bench(image_bench, tmp_path, data, config):
    source = tmp_path / "in.jpg"
    source.write_bytes(data)
    output = tmp_path / "out.npy"
    result = subprocess.run([str(image_bench), str(source), "--repeat", "1", "--output", str(output)]
                            + bench_args(config), capture_output=True, text=True, timeout=60)
    return result, (np.load(output)[0] if result.returncode == 0 else None)


TORCH = {"scale": 1 / 255, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
INCEPTION = {"scale": 1 / 127.5, "mean": [1.0], "std": [1.0]}

CASES = [
    # (source size, JPEG options, config)
    ((1920, 1080), {}, {"width": 299, "height": 299, **INCEPTION}),                       # DCT 1/2
    ((1920, 1080), {}, {"width": 224, "height": 224, "resize": {"shorter_side": 256}, **TORCH}),  # 1/4
    ((1920, 1080), {}, {"width": 64, "height": 48, "dtype": "uint8"}),                      # 1/8
    ((1024, 768), {"progressive": True}, {"width": 299, "height": 299,
                                           "resize": {"center_crop_fraction": 0.875}, **INCEPTION}),
    ((640, 427), {"subsampling": 0}, {"width": 416, "height": 416, "resize": {"letterbox": 114},
                                      "scale": 1 / 255, "layout": "nchw"}),
    ((333, 500), {}, {"width": 224, "height": 224, "resize": {"shorter_side": 256}, "channel_order": "bgr",
                      "mean": [103.939, 116.779, 123.68]}),                                 # caffe style
    ((200, 150), {}, {"width": 300, "height": 250, "dtype": "uint8"}),                      # upsampling
    ((257, 255), {"subsampling": 1}, {"width": 128, "height": 127, "layout": "nchw", "dtype": "uint8"}),
    ((500, 375), {}, {"width": 28, "height": 28, "channels": 1, "scale": 1 / 255}),         # gray from RGB
    ((120, 90), {"mode": "L"}, {"width": 64, "height": 64, "channels": 3, "dtype": "uint8"}),  # RGB from gray
    ((120, 90), {"mode": "L"}, {"width": 50, "height": 40, "channels": 1, "layout": "nchw", "dtype": "uint8"}),
    ((300, 200), {"mode": "CMYK"}, {"width": 150, "height": 100, "dtype": "uint8"}),        # DCT 1/2 CMYK
    ((300, 200), {"mode": "CMYK"}, {"width": 96, "height": 96, "channels": 1, "dtype": "uint8"}),
    ((224, 224), {}, {"width": 224, "height": 224, "dtype": "uint8"}),                      # identity
    ((224, 300), {}, {"width": 224, "height": 224, "resize": {"shorter_side": 224}, "dtype": "uint8"}),  # crop only
    ((640, 480), {}, {"width": 224, "height": 224, "resize": {"shorter_side": 160}, "dtype": "uint8"}),  # pad
    ((1, 1), {}, {"width": 8, "height": 8, "dtype": "uint8"}),
    ((4000, 30), {}, {"width": 100, "height": 100, "resize": {"letterbox": 0}, "dtype": "uint8"}),
    ((4000, 30), {}, {"width": 20, "height": 30, "dtype": "uint8"}),                        # 200x: Int32 path
    ((30, 4000), {"mode": "L"}, {"width": 30, "height": 10, "channels": 1, "dtype": "uint8"}),
]


@pytest.mark.parametrize("size, options, config", CASES, ids=[str(i) for i in range(len(CASES))])
def test_matches_pillow_reference(image_bench, tmp_path, size, options, config):
    options = dict(options)
    data = jpeg(*size, mode=options.pop("mode", "RGB"), **options)
    result, ours = run_bench(image_bench, tmp_path, data, config)
    assert result.returncode == 0, result.stderr
    expected = reference_preprocess(data, config)
    assert ours.shape == expected.shape
    assert ours.dtype == expected.dtype
    difference = np.abs(ours.astype(np.float64) - expected.astype(np.float64))
    limit = tolerance(config)
    assert difference.max() <= limit, f"max |diff| {difference.max()} > {limit} at {np.argmax(difference)}"


def test_dct_scale_choice(image_bench, tmp_path):
    data = jpeg(1920, 1080)
    expectations = [((299, 299), "1/2"), ((224, 224), "1/4"), ((240, 135), "1/8"), ((1000, 540), "1/1")]
    for (width, height), scale in expectations:
        result, _ = run_bench(image_bench, tmp_path, data, {"width": width, "height": height})
        assert f"DCT scale {scale}" in result.stdout, (width, height, result.stdout)


@pytest.mark.parametrize("data, needle", [
    (b"", "empty"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 32, "PNG"),
    (b"GIF89a" + b"\x00" * 32, "GIF"),
    (b"hello, world", "not a JPEG"),
])
def test_rejects_non_jpeg(image_bench, tmp_path, data, needle):
    result, _ = run_bench(image_bench, tmp_path, data, {"width": 8, "height": 8})
    assert result.returncode == 2
    assert needle in result.stderr


def test_rejects_truncated(image_bench, tmp_path):
    data = jpeg(320, 240)
    for cut in (3, 20, len(data) // 3, len(data) - 2):
        result, _ = run_bench(image_bench, tmp_path, data[:cut], {"width": 64, "height": 64})
        assert result.returncode == 2, cut
        assert "truncated" in result.stderr, (cut, result.stderr)


def test_rejects_too_many_pixels(image_bench, tmp_path):
    data = jpeg(400, 300)
    result, _ = run_bench(image_bench, tmp_path, data, {"width": 64, "height": 64, "max_pixels": 119_999})
    assert result.returncode == 2
    assert "400x300" in result.stderr and "119999" in result.stderr
    result, _ = run_bench(image_bench, tmp_path, data, {"width": 64, "height": 64, "max_pixels": 120_000})
    assert result.returncode == 0, result.stderr
