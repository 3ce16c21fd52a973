#!/usr/bin/env python3
"""JPEG to model tensor: ImageCodec (`image-bench`) vs Pillow, same image, same run, one thread.

Generates a 1920x1080 JPEG (Pillow, quality 90, 4:2:0: smooth synthetic colour fields plus
Gaussian noise, fixed seed) unless --jpeg is given, then times
  Pillow: Image.open + convert("RGB") + resize((W, H), BILINEAR) + float32 (x / 127.5 - 1)
  ours:   image-bench FILE --width W --height H --scale 0.0078431373 --mean 1 (same tensor)
Both time decode-to-tensor from bytes already in memory, one thread. The machine is shared,
so the two alternate: --rounds rounds of (Pillow x --repeat, ours x --repeat), each after a
warm-up. A side's figure is the median of its per-round medians; the speedup is the median
of the per-round ratios (Pillow / ours, measured seconds apart, so drifting load cancels).
--noise takes several levels, one JPEG each: the noise sets the file size, i.e. the entropy
(Huffman) decoding that both sides must do in full whatever the DCT scaling. The "floor"
column is that part alone: image-bench decoding at 1/8 to an image needing no resize; Pillow
/ floor bounds any speedup a libjpeg-turbo pipeline can reach on one thread. Prints a
Markdown table (the issue asks for a speedup >= 3).

usage: jpeg_vs_pillow.py --image-bench .build/release/image-bench [--repeat 20] [--rounds 5]
           [--noise 0 2 4 6 8] [--jpeg F ...] [--width 299 --height 299]
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
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path, quality=quality)


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


def ours_ms(image_bench, path, width, height, repeat, extra=("--scale", str(1 / 127.5), "--mean", "1")):
    out = subprocess.run(
        [image_bench, path, "--width", str(width), "--height", str(height), "--repeat", str(repeat), *extra],
        check=True, capture_output=True, text=True).stdout
    dct = re.search(r"DCT scale (\S+)", out).group(1)
    return float(re.search(r"^median_ms: ([0-9.]+)$", out, re.M).group(1)), dct


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-bench", required=True)
    parser.add_argument("--jpeg", nargs="*", default=[], help="existing JPEGs to time as well")
    parser.add_argument("--noise", type=float, nargs="*", default=[0, 2, 4, 6, 8],
                        help="noise levels (sigma) of synthetic 1920x1080 JPEGs")
    parser.add_argument("--width", type=int, default=299)
    parser.add_argument("--height", type=int, default=299)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    print("| source | noise | JPEG KiB | target | ours ms (DCT scale) | Pillow ms | speedup (Pillow / ours) "
          "| floor ms | Pillow / floor |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as directory:
        cases = []
        for noise in args.noise:
            path = os.path.join(directory, f"synthetic_noise{noise:g}.jpg")
            synthetic_jpeg(path, noise=noise)
            cases.append((path, f"{noise:g}"))
        cases += [(path, "-") for path in args.jpeg]
        for path, noise in cases:
            with open(path, "rb") as file:
                data = file.read()
            source = Image.open(io.BytesIO(data)).size
            eighth = ((source[0] + 7) // 8, (source[1] + 7) // 8)
            pillow_rounds, ours_rounds, floor_rounds = [], [], []
            for _ in range(args.rounds):
                pillow_rounds.append(median_ms(lambda: pillow_tensor(data, args.width, args.height), args.repeat))
                ours, dct = ours_ms(args.image_bench, path, args.width, args.height, args.repeat)
                ours_rounds.append(ours)
                floor_rounds.append(ours_ms(args.image_bench, path, *eighth, args.repeat, ("--dtype", "uint8"))[0])
            pillow, ours = float(np.median(pillow_rounds)), float(np.median(ours_rounds))
            floor = float(np.median(floor_rounds))
            speedup = float(np.median([p / o for p, o in zip(pillow_rounds, ours_rounds)]))
            bound = float(np.median([p / f for p, f in zip(pillow_rounds, floor_rounds)]))
            print(f"| {source[0]}x{source[1]} | {noise} | {len(data) / 1024:.0f} | {args.width}x{args.height} | "
                  f"{ours:.2f} ({dct}) | {pillow:.2f} | {speedup:.2f}x | {floor:.2f} | {bound:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
