"""Reference for the server's JPEG input preprocessing (Sources/ImageCodec), in Pillow + numpy.

`reference_preprocess(jpeg_bytes, config)` returns the tensor the server should feed the
model for one image, without the batch dimension: (H, W, C) for "nhwc", (C, H, W) for
"nchw". `config` keys (defaults in brackets) mirror `ImagePreprocessing`:

    width, height           model input size
    channels [3]            1 (the JPEG's luma) or 3
    channel_order ["rgb"]   or "bgr"
    layout ["nhwc"]         or "nchw"
    resize ["stretch"]      "stretch" | {"shorter_side": N} | {"center_crop_fraction": F}
                            | {"letterbox": FILL}
    scale [1], mean [[0]], std [[1]]   out = (pixel * scale - mean[c]) / std[c], float32
    dtype ["float32"]       or "uint8" (the resized pixels, no scale/mean/std)
    max_pixels [50e6]       source width * height limit

Decoding: Pillow's libjpeg-turbo, reduced in the DCT domain with `Image.draft` by the same
rule as the server (the largest of 8, 4, 2 not above the shrink factor on either axis), to
"L" for one channel; CMYK JPEGs (Adobe, inverted) become RGB as value(c) * value(k) / 255.
Resizing: Pillow `resize(size, BILINEAR, box)` over the region in the reduced image.

Agreement with the server: the 8-bit samples are bit-identical (the server decodes with the
same libjpeg-turbo algorithms and reproduces Pillow's fixed-point resampling exactly), and
the float32 values come from the same float32 operations, so `tolerance` is 0 for uint8
and a few float32 ulps for float32 (slack for a numpy that evaluated (x * scale - mean) / std
in another order or precision; today they are equal).
"""
import io
import math

import numpy as np
from PIL import Image

DEFAULT_MAX_PIXELS = 50_000_000


class ImageRejected(ValueError):
    """The input would get a 400: `kind` is "not_jpeg" or "too_large"."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


def _axis(region_start, region_end, virtual, output):
    """(region_start, region_end, virtual_size, first, count, offset) as in Geometry.swift."""
    if virtual >= output:
        first = round((virtual - output) / 2)  # Python's round: half to even
        return region_start, region_end, virtual, first, output, 0
    return region_start, region_end, virtual, 0, virtual, (output - virtual) // 2


def plan(source_width, source_height, config):
    """Per-axis plans (x, y) and the padding value, the server's ImagePlan."""
    w, h = source_width, source_height
    width, height = config["width"], config["height"]
    resize = config.get("resize", "stretch")
    if resize == "stretch":
        return _axis(0, w, width, width), _axis(0, h, height, height), 0
    (mode, value), = resize.items()
    if mode == "shorter_side":
        if w <= h:
            vw, vh = value, max(1, int(value * h / w))
        else:
            vw, vh = max(1, int(value * w / h)), value
        return _axis(0, w, vw, width), _axis(0, h, vh, height), 0
    if mode == "center_crop_fraction":
        def crop(size, output):
            start = int((size - size * value) / 2)
            extent = max(1, size - 2 * start)
            return start, start + extent, output, 0, output, 0
        return crop(w, width), crop(h, height), 0
    if mode == "letterbox":
        r = min(width / w, height / h)
        vw = min(width, max(1, round(w * r)))
        vh = min(height, max(1, round(h * r)))
        return _axis(0, w, vw, width), _axis(0, h, vh, height), int(value)
    raise ValueError(f"unknown resize {resize!r}")


def scale_denominator(x, y):
    limit = min((x[1] - x[0]) / x[2], (y[1] - y[0]) / y[2])
    for d in (8, 4, 2):
        if d <= limit:
            return d
    return 1


def _cmyk_to_rgb(pixels):
    """Pillow reads Adobe CMYK inverted (ink); the file holds 255 - ink, as TurboJPEG returns."""
    raw = 255 - pixels.astype(np.int32)
    t = raw[..., :3] * raw[..., 3:4] + 128
    return ((t + (t >> 8)) >> 8).astype(np.uint8)


def decode(jpeg_bytes, config):
    """The decoded (DCT-reduced) image as uint8 (h, w, channels), the plan and denominator."""
    if len(jpeg_bytes) < 2 or jpeg_bytes[:2] != b"\xff\xd8":
        raise ImageRejected("not_jpeg", "not a JPEG")
    image = Image.open(io.BytesIO(jpeg_bytes))
    w, h = image.size
    if w * h > config.get("max_pixels", DEFAULT_MAX_PIXELS):
        raise ImageRejected("too_large", f"{w}x{h} is too large")
    x, y, fill = plan(w, h, config)
    d = scale_denominator(x, y)
    channels = config.get("channels", 3)
    mode = "L" if channels == 1 else "RGB"
    image.draft(mode, (w // d, h // d) if d > 1 else None)
    assert image.size == (math.ceil(w / d), math.ceil(h / d)), (image.size, w, h, d)
    if image.mode == "CMYK":
        rgb = _cmyk_to_rgb(np.asarray(image))
        if channels == 1:
            r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
            pixels = ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)[..., None]
        else:
            pixels = rgb
    else:
        pixels = np.asarray(image.convert(mode))
        pixels = pixels[..., None] if channels == 1 else pixels
    return pixels, (x, y, fill), d


def reference_preprocess(jpeg_bytes, config):
    pixels, (x, y, fill), d = decode(jpeg_bytes, config)
    channels = pixels.shape[2]
    image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels)
    box = (x[0] / d, y[0] / d, x[1] / d, y[1] / d)
    resized = np.asarray(image.resize((x[2], y[2]), Image.BILINEAR, box=box))
    resized = resized.reshape(y[2], x[2], channels)
    window = resized[y[3]:y[3] + y[4], x[3]:x[3] + x[4]]
    height, width = config["height"], config["width"]
    out = np.full((height, width, channels), fill, dtype=np.uint8)
    out[y[5]:y[5] + y[4], x[5]:x[5] + x[4]] = window
    if channels == 3 and config.get("channel_order", "rgb") == "bgr":
        out = out[..., ::-1]
    if config.get("dtype", "float32") == "float32":
        scale = np.float32(config.get("scale", 1.0))
        mean = np.asarray(config.get("mean", [0.0]), dtype=np.float32)
        std = np.asarray(config.get("std", [1.0]), dtype=np.float32)
        out = (out.astype(np.float32) * scale - mean) / std
    if config.get("layout", "nhwc") == "nchw":
        out = out.transpose(2, 0, 1)
    return np.ascontiguousarray(out)


def tolerance(config):
    """Largest expected |server - reference| per element (see the module docstring)."""
    if config.get("dtype", "float32") == "uint8":
        return 0
    scale = abs(float(config.get("scale", 1.0)))
    mean = max(abs(float(m)) for m in config.get("mean", [0.0]))
    std = min(abs(float(s)) for s in config.get("std", [1.0]))
    return 4 * np.finfo(np.float32).eps * (255 * scale + mean) / std
