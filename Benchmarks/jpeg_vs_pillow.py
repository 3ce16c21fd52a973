#!/usr/bin/env python3
"""JPEG to model tensor: ImageCodec (`image-bench`) vs Pillow, same image, same run, one thread.

Generates a 1920x1080 JPEG (Pillow, quality 90, 4:2:0: smooth synthetic colour fields plus
Gaussian noise, fixed seed) unless --jpeg is given, then times
  Pillow: Image.open + convert("RGB") + resize((W, H), BILINEAR) + float32 (x / 127.5 - 1)
  ours:   image-bench FILE --width W --height H --scale 0.0078431373 --mean 1 (same tensor)
Both time decode-to-tensor from bytes already in memory (medians of --repeat runs after a
warm-up). Prints a Markdown table row; speedup = Pillow / ours (the issue asks >= 3).

usage: jpeg_vs_pillow.py --image-bench .build/release/image-bench [--repeat 50] [--jpeg F]
"""
import argparse
import io
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image


def synthetic_jpeg(path, width=1920, height=1080, quality=90, noise=6.0, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = x / width, y / height
    image = np.stack([
        128 + 100 * np.sin(2 * np.pi * (1.5 * u + 0.5 * v)),
        128 + 90 * np.cos(2 * np.pi * (2.0 * v - 0.7 * u)),
        128 + 80 * np.sin(2 * np.pi * 3.0 * u * v + 1.0),
    ], axis=-1)
    image += rng.normal(0, noise, image.shape)
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8), "RGB").save(path, quality=quality)


def pillow_tensor(data, width, height):
    image = Image.open(io.BytesIO(data)).convert("RGB").resize((width, height), Image.BILINEAR)
    return np.asarray(image, dtype=np.float32) / np.float32(127.5) - np.float32(1)


def median_ms(function, repeat):
    function()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-bench", required=True)
    parser.add_argument("--jpeg", help="an existing JPEG instead of the synthetic 1920x1080 one")
    parser.add_argument("--width", type=int, default=299)
    parser.add_argument("--height", type=int, default=299)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as directory:
        path = args.jpeg
        if path is None:
            path = os.path.join(directory, "synthetic_1920x1080.jpg")
            synthetic_jpeg(path)
        data = open(path, "rb").read()
        source = Image.open(io.BytesIO(data)).size

        pillow = median_ms(lambda: pillow_tensor(data, args.width, args.height), args.repeat)
        out = subprocess.run(
            [args.image_bench, path, "--width", str(args.width), "--height", str(args.height),
             "--scale", str(1 / 127.5), "--mean", "1", "--repeat", str(args.repeat)],
            check=True, capture_output=True, text=True).stdout
        ours = float(re.search(r"^median_ms: ([0-9.]+)$", out, re.M).group(1))
        dct = re.search(r"DCT scale (\S+)", out).group(1)

    print("| source | JPEG KiB | target | ours ms (DCT scale) | Pillow ms | speedup (Pillow / ours) |")
    print("|---|---:|---|---:|---:|---:|")
    print(f"| {source[0]}x{source[1]} | {len(data) / 1024:.0f} | {args.width}x{args.height} | "
          f"{ours:.2f} ({dct}) | {pillow:.2f} | {pillow / ours:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
