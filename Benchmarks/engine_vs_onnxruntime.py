#!/usr/bin/env python3
"""Engine benchmark: our `model-run` vs onnxruntime on the same model, inputs, machine and
thread count, in one run. Each measurement runs in its own child process so its peak
resident memory (ru_maxrss) is its own. Prints a Markdown table; the ratio is ours / ORT
(below 1 means we are faster).

usage: engine_vs_onnxruntime.py --model-run .build/release/model-run [OTHER/model-run ...] --model M.onnx \
           [--batches 1 8] [--threads 1 2] [--repeat 20] [--rounds 1]

With --rounds N each point runs N times, ORT and ours alternating, and the table gives the
median of each side and the median of the N per-round ratios (on a shared VM whose speed
drifts by 20-50% within a minute, a ratio of runs taken seconds apart is the stable figure).
With several --model-run binaries (say the build before a change and after it), each round
runs ORT and then every binary, so before/after ratios come from the same minutes.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

ORT_CHILD = r"""
import json, sys, time
import numpy as np
import onnxruntime as ort
model, input_path, threads, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
options = ort.SessionOptions()
options.intra_op_num_threads = threads
options.inter_op_num_threads = 1
options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
x = np.load(input_path)
feed = {session.get_inputs()[0].name: x}
session.run(None, feed)
times = []
for _ in range(repeat):
    start = time.perf_counter()
    session.run(None, feed)
    times.append((time.perf_counter() - start) * 1e3)
print(json.dumps({"median_ms": float(np.median(times))}))
"""


def timed(argv):
    """Runs argv to completion; returns (stdout, peak RSS MiB) using wait4 on that child."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.dup2(write, 1)
        os.close(read)
        os.execvp(argv[0], argv)
    os.close(write)
    chunks = []
    while True:
        chunk = os.read(read, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read)
    _, status, usage = os.wait4(pid, 0)
    if status != 0:
        sys.exit(f"failed ({status}): {' '.join(argv)}")
    return b"".join(chunks).decode(), usage.ru_maxrss / 1024


def assumed_peak():
    """GFLOP/s of one core at an assumed 3.5 GHz: 2 FMA pipes x 2 flops x vector lanes."""
    return 2 * 2 * (16 if has_avx512() else 8) * 3.5


def has_avx512():
    try:
        return " avx512f" in open("/proc/cpuinfo").read()
    except OSError:
        return False


def measured_peak():
    """One core's FP32 FMA peak measured by Benchmarks/fma_peak.c (built here with cc or
    clang), or None when no C compiler is found."""
    compiler = shutil.which("cc") or shutil.which("clang")
    if not compiler:
        return None
    source = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fma_peak.c")
    with tempfile.TemporaryDirectory() as tmp:
        binary = os.path.join(tmp, "fma_peak")
        flags = ["-O2", "-mavx2", "-mfma"] + (["-mavx512f"] if has_avx512() else [])
        subprocess.run([compiler, *flags, source, "-o", binary], check=True)
        return float(subprocess.run([binary], check=True, capture_output=True, text=True).stdout)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-run", required=True, nargs="+", help="one or more model-run binaries")
    parser.add_argument("--model", required=True)
    parser.add_argument("--input-shape", type=int, nargs="+", help="per-sample shape; default from the model")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--kernels", nargs="+", default=["automatic"], help="model-run --kernels values to measure")
    parser.add_argument("--gflop", type=float, help="GFLOP per sample, for GFLOP/s; default from model-run")
    parser.add_argument("--rounds", type=int, default=1, help="alternating ORT/ours runs per point (medians reported)")
    parser.add_argument("--peak-gflops-per-core", type=float,
                        help="FP32 peak of one core; default measured (Benchmarks/fma_peak.c), else assumed as "
                             "2 FMA pipes x 2 flops x (16 lanes with AVX-512, else 8) x 3.5 GHz")
    args = parser.parse_args()
    # Measured before and after the runs (a busy neighbour lowers a measurement, never raises it).
    peaks = [] if args.peak_gflops_per_core is not None else [measured_peak()]

    import onnx
    graph = onnx.load(args.model, load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    first = next(i for i in graph.input if i.name not in initializers)
    sample_shape = args.input_shape or [d.dim_value for d in first.type.tensor_type.shape.dim[1:]]

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for batch in args.batches:
            x = np.random.default_rng(0).uniform(-1, 1, [batch, *sample_shape]).astype(np.float32)
            path = os.path.join(tmp, f"x{batch}.npy")
            np.save(path, x)
            for threads in args.threads:
                for kernels in args.kernels:
                    binaries = args.model_run
                    orts, ourss, ratios = [], {b: [] for b in binaries}, {b: [] for b in binaries}
                    ort_rss, ours_rss, gflop = 0.0, {b: 0.0 for b in binaries}, 0.0
                    for _ in range(args.rounds):
                        ort_out, rss = timed([sys.executable, "-c", ORT_CHILD, args.model, path, str(threads), str(args.repeat)])
                        ort_rss = max(ort_rss, rss)
                        orts.append(json.loads(ort_out.strip().splitlines()[-1])["median_ms"])
                        for binary in binaries:
                            ours_out, rss = timed([binary, args.model, "--input", path, "--threads", str(threads),
                                                   "--repeat", str(args.repeat), "--kernels", kernels])
                            ours_rss[binary] = max(ours_rss[binary], rss)
                            values = dict(line.split(": ", 1) for line in ours_out.splitlines() if ": " in line)
                            ourss[binary].append(float(values["median_ms"]))
                            gflop = float(values["gflops_per_s"]) * ourss[binary][-1] / 1e3
                            ratios[binary].append(ourss[binary][-1] / orts[-1])
                    ort = float(np.median(orts))
                    for binary in binaries:
                        ours, ratio = float(np.median(ourss[binary])), float(np.median(ratios[binary]))
                        label = kernels if len(binaries) == 1 else f"{kernels} {binary}"
                        rows.append((batch, threads, label, ours, ort, ratio, gflop / ours * 1e3, gflop / ort * 1e3,
                                     threads, ours_rss[binary], ort_rss))
                        print(f"batch {batch} threads {threads} {label}: ours {ours:.1f} ms, onnxruntime {ort:.1f} ms, "
                              f"ratio {ratio:.2f} (per round: {' '.join(f'{r:.2f}' for r in ratios[binary])})", file=sys.stderr)
    if peaks:
        peaks.append(measured_peak())
        measured = [p for p in peaks if p]
        args.peak_gflops_per_core = max(measured) if measured else assumed_peak()
        print(f"peak GFLOP/s per core: {args.peak_gflops_per_core:.1f} "
              f"({'measured, best of ' + ' and '.join(f'{p:.1f}' for p in measured) if measured else 'assumed 3.5 GHz'})",
              file=sys.stderr)
    print("| batch | threads | kernels | ours ms | onnxruntime ms | ratio (ours/ORT, median of rounds) | ours GFLOP/s | ORT GFLOP/s | peak GFLOP/s | ours peak RSS MiB | ORT peak RSS MiB |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.1f} | {r[4]:.1f} | {r[5]:.2f} | {r[6]:.1f} | {r[7]:.1f} | {args.peak_gflops_per_core * r[8]:.0f} | {r[9]:.0f} | {r[10]:.0f} |")


if __name__ == "__main__":
    main()
