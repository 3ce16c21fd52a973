#!/usr/bin/env python3
"""JPEG to model tensor: ImageCodec (`image-bench`) vs Pillow, same image, same run, one thread.

Generates 1920x1080 JPEGs (Pillow, quality 90, 4:2:0: smooth synthetic colour fields plus
Gaussian noise, fixed seed; --noise), takes any --jpeg files, and with --debian-photos makes
1920x1080 quality-90 JPEGs of the real photographs in two Debian wallpaper packages
(plasma-workspace-wallpapers, mate-backgrounds: fetched with `apt-get download`, centre-cropped
to 16:9, Lanczos-downscaled), then times
  Pillow: Image.open + convert("RGB") + resize((W, H), BILINEAR) + float32 (x / 127.5 - 1)
  ours:   image-bench FILE --width W --height H --scale 0.0078431373 --mean 1 (same tensor)
Both time decode-to-tensor from bytes already in memory, one thread. Pillow runs at its best:
glibc's malloc is told to keep freed memory (M_TRIM_THRESHOLD, M_MMAP_THRESHOLD), since by
default a fresh process maps and page-faults each decoded image's 8 MB buffer anew (+10 ms for
a 1080p photo; --pillow-malloc default measures that). The machine is shared,
so the two alternate: --rounds rounds of (Pillow x --repeat, ours x --repeat), each after a
warm-up. A side's figure is the median of its per-round medians; the speedup is the median
of the per-round ratios (Pillow / ours, measured seconds apart, so drifting load cancels).
--noise takes several levels, one JPEG each: the noise sets the file size, i.e. the entropy
(Huffman) decoding that both sides must do in full whatever the DCT scaling. The "floor"
column is that part alone: image-bench decoding at 1/8 to an image needing no resize; Pillow
/ floor bounds any speedup a libjpeg-turbo pipeline can reach on one thread. Prints a
Markdown table (the issue asks for a speedup >= 3).

usage: jpeg_vs_pillow.py --image-bench .build/release/image-bench [--repeat 20] [--rounds 5]
           [--noise 0 2 4 6 8] [--jpeg F ...] [--debian-photos [DIR]] [--width 299 --height 299]
           [--pillow-malloc tuned|default]
"""
import argparse
import ctypes
import glob
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


# Photographs (not artwork) in Debian 12's wallpaper packages, by package.
DEBIAN_PHOTOS = {
    "plasma-workspace-wallpapers": [f"usr/share/wallpapers/{name}/contents/images/2560x1600.jpg" for name in (
        "Autumn", "BytheWater", "ColdRipple", "ColorfulCups", "EveningGlow", "FallenLeaf", "OneStandsOut",
        "Path")],
    "mate-backgrounds": [f"usr/share/backgrounds/mate/nature/{name}.jpg" for name in (
        "Aqua", "Blinds", "Garden", "LadyBird", "RainDrops", "Storm", "TwoWings", "Wood", "YellowFlower")],
}


def debian_photos(directory):
    """1920x1080 quality-90 JPEGs of DEBIAN_PHOTOS in `directory` (made once, then reused)."""
    os.makedirs(directory, exist_ok=True)
    outputs = []
    for package, members in DEBIAN_PHOTOS.items():
        unpacked = os.path.join(directory, package)
        if not os.path.isdir(unpacked):
            subprocess.run(["apt-get", "download", package], cwd=directory, check=True, capture_output=True)
            deb = glob.glob(os.path.join(directory, f"{package}_*.deb"))[0]
            subprocess.run(["dpkg-deb", "-x", deb, unpacked], check=True)
            os.remove(deb)
        for member in members:
            name = member.split("/")[-4] if package.startswith("plasma") else os.path.basename(member)[:-4]
            output = os.path.join(directory, f"{name}-1080p.jpg")
            if not os.path.exists(output):
                image = Image.open(os.path.join(unpacked, member)).convert("RGB")
                width, height = image.size
                crop_height = width * 9 // 16
                if crop_height <= height:
                    box = (0, (height - crop_height) // 2, width, (height - crop_height) // 2 + crop_height)
                else:
                    crop_width = height * 16 // 9
                    box = ((width - crop_width) // 2, 0, (width - crop_width) // 2 + crop_width, height)
                image.crop(box).resize((1920, 1080), Image.LANCZOS).save(output, quality=90)
            outputs.append(output)
    return outputs


def keep_freed_memory():
    """Stops glibc returning freed heap to the kernel and mapping large blocks one by one, so
    Pillow reuses its decode buffers instead of page-faulting them in on every call."""
    libc = ctypes.CDLL("libc.so.6")
    m_trim_threshold, m_mmap_threshold = -1, -3
    if not (libc.mallopt(m_trim_threshold, 1 << 30) and libc.mallopt(m_mmap_threshold, 32 << 20)):
        raise RuntimeError("mallopt failed")


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
    parser.add_argument("--debian-photos", nargs="?", const=os.path.expanduser(
        "~/.cache/swift-model-server/jpeg-photos"), metavar="DIR",
                        help="also time 1080p JPEGs of the photos in Debian's wallpaper packages (made in DIR)")
    parser.add_argument("--pillow-malloc", choices=["tuned", "default"], default="tuned",
                        help="tuned: glibc keeps freed memory (Pillow at its best); default: as a fresh process")
    parser.add_argument("--width", type=int, default=299)
    parser.add_argument("--height", type=int, default=299)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if args.pillow_malloc == "tuned":
        keep_freed_memory()
    photos = debian_photos(args.debian_photos) if args.debian_photos else []

    print("| source | noise | JPEG KiB | target | ours ms (DCT scale) | Pillow ms | speedup (Pillow / ours) "
          "| floor ms | Pillow / floor |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as directory:
        cases = []
        for noise in args.noise:
            path = os.path.join(directory, f"synthetic_noise{noise:g}.jpg")
            synthetic_jpeg(path, noise=noise)
            cases.append((path, "synthetic", f"{noise:g}"))
        cases += [(path, os.path.basename(path), "-") for path in args.jpeg + photos]
        for path, label, noise in cases:
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
            print(f"| {label} {source[0]}x{source[1]} | {noise} | {len(data) / 1024:.0f} | {args.width}x{args.height} | "
                  f"{ours:.2f} ({dct}) | {pillow:.2f} | {speedup:.2f}x | {floor:.2f} | {bound:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
