#!/usr/bin/env python3
"""INT8 against FP32 on our own engine: latency of the quantized model (from
Tests/Fixtures/make_quantized_models.py) against the float Keras export it came from, same
batch and threads, interleaved rounds (median of per-round ratios); the integer GOP/s (the
float model's operation count over the INT8 time); peak RSS of each model-run child; and the
top-1 agreement of INT8 with FP32 on crops, flips and scales of real photos (not the
calibration crops). For ours against onnxruntime on the same quantized model use
engine_vs_onnxruntime.py --model <cache>/quantized/<name>/model.onnx.

usage: int8_vs_fp32.py --model-run .build/release/model-run [--networks resnet50 ...]
           [--variant qdq_per_channel] [--batch 8] [--threads 1] [--repeat 10] [--rounds 3]
           [--agreement 256]
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "Tests", "Fixtures"))
import make_quantized_models as fixtures  # noqa: E402


def model_run(binary, model, x_path, threads, repeat, out=None):
    """(median ms, gflops_per_s or None, peak RSS MiB) of one model-run child."""
    argv = [binary, model, "--input", x_path, "--threads", str(threads), "--repeat", str(repeat)]
    if out:
        argv += ["--output", out]
    pid = os.fork()
    if pid == 0:
        fd = os.open(os.path.join(tempfile.gettempdir(), f"int8bench-{os.getpid()}.txt"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.execvp(argv[0], argv)
    _, status, usage = os.wait4(pid, 0)
    log = os.path.join(tempfile.gettempdir(), f"int8bench-{pid}.txt")
    text = open(log).read()
    os.remove(log)
    if status != 0:
        sys.exit(f"failed: {' '.join(argv)}\n{text}")
    median = float(re.search(r"median_ms: ([0-9.]+)", text).group(1)) if repeat else None
    gflops = re.search(r"gflops_per_s: ([0-9.]+)", text)
    return median, float(gflops.group(1)) if gflops else None, usage.ru_maxrss / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-run", required=True)
    parser.add_argument("--networks", nargs="+", default=list(fixtures.NETWORKS))
    parser.add_argument("--variant", default="qdq_per_channel")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--agreement", type=int, default=256, help="crops for the top-1 agreement (0: skip)")
    args = parser.parse_args()
    cache = fixtures.cache_dir()
    print(f"| network | batch | threads | FP32 ms | INT8 ms | speed-up (median of rounds) | per round | INT8 GOP/s | "
          f"FP32 / INT8 peak RSS MiB | top-1 agreement |")
    print("|---|---:|---:|---:|---:|---:|---|---:|---|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for network in args.networks:
            side = fixtures.NETWORKS[network]
            fp32 = os.path.join(cache, "models", network, "model.onnx")
            int8 = os.path.join(cache, "quantized", f"{network}_{args.variant}", "model.onnx")
            x = fixtures.crops(side, args.batch, 2000).astype(np.float32)
            x_path = os.path.join(tmp, "x.npy")
            np.save(x_path, x)
            floats, ints, ratios, ops, rss = [], [], [], [], (0, 0)
            for _ in range(args.rounds):
                f_ms, f_gflops, f_rss = model_run(args.model_run, fp32, x_path, args.threads, args.repeat)
                i_ms, _, i_rss = model_run(args.model_run, int8, x_path, args.threads, args.repeat)
                floats.append(f_ms)
                ints.append(i_ms)
                ratios.append(f_ms / i_ms)
                if f_gflops:
                    ops.append(f_gflops * f_ms / i_ms)
                rss = (max(rss[0], f_rss), max(rss[1], i_rss))
            agreement = "-"
            if args.agreement:
                same = 0
                for first in range(0, args.agreement, 32):
                    count = min(32, args.agreement - first)
                    crops = fixtures.crops(side, count, 3000 + first).astype(np.float32)
                    np.save(x_path, crops)
                    model_run(args.model_run, fp32, x_path, args.threads, 0, os.path.join(tmp, "f.npy"))
                    model_run(args.model_run, int8, x_path, args.threads, 0, os.path.join(tmp, "i.npy"))
                    same += int((np.load(os.path.join(tmp, "f.npy")).argmax(-1) == np.load(os.path.join(tmp, "i.npy")).argmax(-1)).sum())
                agreement = f"{same}/{args.agreement} = {100 * same / args.agreement:.1f}%"
            print(f"| {network} {args.variant} | {args.batch} | {args.threads} | {np.median(floats):.1f} | {np.median(ints):.1f} | "
                  f"{np.median(ratios):.2f}x | {' '.join(f'{r:.2f}' for r in ratios)} | "
                  f"{np.median(ops) if ops else float('nan'):.0f} | {rss[0]:.0f} / {rss[1]:.0f} | {agreement} |", flush=True)


if __name__ == "__main__":
    main()
