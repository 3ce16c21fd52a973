#!/usr/bin/env python3
"""SavedModel benchmark: our `model-run` on a TensorFlow SavedModel vs TensorFlow's own
`tf.saved_model.load` + signature on the same export, inputs, machine and thread count,
interleaved in one run; optionally our ONNX path on the same architecture (tf2onnx export
from Tests/Fixtures/make_keras_models.py) for the "within 5% of our ONNX path" figure.

usage: savedmodel_vs_tensorflow.py --model-run .build/release/model-run \
           --tf-python ~/.cache/swift-model-server/venv-tf2/bin/python \
           --export DIR [--onnx M.onnx] [--batches 1 8] [--threads 1 2] [--repeat 10] [--rounds 3]

Each measurement is its own child process. Prints two Markdown tables:
  latency: median ms per side and the median of per-round ratios (ours / TF; < 1 is faster);
  start-up: seconds from process start to the first answer (TF: import + load + first
  call, and load + first call alone) and peak RSS of that process.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

TF_CHILD = r"""
import json, os, sys, time, resource
started = time.perf_counter()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
export, input_path, threads, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
import numpy as np
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(threads)
tf.config.threading.set_inter_op_parallelism_threads(1)
imported = time.perf_counter()
loaded = tf.saved_model.load(export)
function = loaded.signatures["serving_default"]
name = list(function.structured_input_signature[1].keys())[0]
x = tf.constant(np.load(input_path))
function(**{name: x})
first = time.perf_counter()
times = []
for _ in range(repeat):
    start = time.perf_counter()
    out = function(**{name: x})
    [v.numpy() for v in out.values()]
    times.append((time.perf_counter() - start) * 1e3)
print(json.dumps({"median_ms": float(np.median(times)) if times else None,
                  "start_to_first_s": first - started, "load_to_first_s": first - imported,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def child_rss(argv):
    """Runs argv; returns (stdout, wall seconds, peak RSS MiB of that child)."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    out = process.stdout.read().decode()
    err = process.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(argv)}\n{err[-2000:]}")
    return out, wall, usage.ru_maxrss / 1024


def ours(model_run, export, alias, path, threads, repeat):
    out, wall, rss = child_rss([model_run, export, "--input", f"{alias}={path}", "--threads", str(threads), "--repeat", str(repeat)])
    median = float(out.strip().splitlines()[-1].split()[-1]) if repeat else None
    return median, wall, rss


def onnx(model_run, model, path, threads, repeat):
    out, _, _ = child_rss([model_run, model, "--input", path, "--threads", str(threads), "--repeat", str(repeat)])
    return float(out.strip().splitlines()[-1].split()[-1])


def tensorflow(python, export, path, threads, repeat):
    out, _, _ = child_rss([python, "-c", TF_CHILD, export, path, str(threads), str(repeat)])
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-run", required=True)
    parser.add_argument("--tf-python", required=True)
    parser.add_argument("--export", required=True, help="a SavedModel version directory (saved_model.pb inside)")
    parser.add_argument("--onnx", help="the same architecture as ONNX, for our ONNX path")
    parser.add_argument("--alias", help="the serving_default input alias (default: read with TF)")
    parser.add_argument("--size", type=int, help="image side (default: from the signature)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    probe = subprocess.run([args.tf_python, "-c", (
        "import os,sys,json; os.environ['TF_CPP_MIN_LOG_LEVEL']='3'; import tensorflow as tf;"
        "f=tf.saved_model.load(sys.argv[1]).signatures['serving_default'];"
        "n,s=list(f.structured_input_signature[1].items())[0]; print(json.dumps([n, s.shape.as_list()]))"), args.export],
        capture_output=True, text=True, check=True)
    alias, shape = json.loads(probe.stdout.strip().splitlines()[-1])
    alias = args.alias or alias
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"CPU: {cpu}; export {args.export} input {alias} {shape}\n")
    rng = np.random.default_rng(0)
    workdir = tempfile.mkdtemp()
    rows = []
    for batch in args.batches:
        path = os.path.join(workdir, f"x{batch}.npy")
        np.save(path, rng.uniform(-1, 1, [batch] + shape[1:]).astype(np.float32))
        for threads in args.threads:
            ratios, mine, theirs, onnx_times, onnx_ratios = [], [], [], [], []
            for _ in range(args.rounds):
                tf_result = tensorflow(args.tf_python, args.export, path, threads, args.repeat)
                median, _, _ = ours(args.model_run, args.export, alias, path, threads, args.repeat)
                mine.append(median)
                theirs.append(tf_result["median_ms"])
                ratios.append(median / tf_result["median_ms"])
                if args.onnx:
                    onnx_ms = onnx(args.model_run, args.onnx, path, threads, args.repeat)
                    onnx_times.append(onnx_ms)
                    onnx_ratios.append(median / onnx_ms)
            row = (batch, threads, statistics.median(mine), statistics.median(theirs), statistics.median(ratios))
            if args.onnx:
                row += (statistics.median(onnx_times), statistics.median(onnx_ratios))
            rows.append(row)
            print("measured", row, file=sys.stderr, flush=True)
    header = "| batch | threads | ours SavedModel ms | TensorFlow ms | ours / TF |"
    rule = "|---:|---:|---:|---:|---:|"
    if args.onnx:
        header += " ours ONNX ms | SavedModel / ONNX |"
        rule += "---:|---:|"
    print(header)
    print(rule)
    for row in rows:
        cells = [str(row[0]), str(row[1]), f"{row[2]:.1f}", f"{row[3]:.1f}", f"{row[4]:.2f}"]
        if args.onnx:
            cells += [f"{row[5]:.1f}", f"{row[6]:.2f}"]
        print("| " + " | ".join(cells) + " |")

    # Start-up: process start to first answer, and peak RSS (batch 1, one thread).
    path = os.path.join(workdir, "x1.npy")
    if not os.path.exists(path):
        np.save(path, rng.uniform(-1, 1, [1] + shape[1:]).astype(np.float32))
    starts, rss, tf_starts, tf_loads, tf_rss = [], [], [], [], []
    for _ in range(args.rounds):
        _, wall, peak = ours(args.model_run, args.export, alias, path, 1, 0)
        starts.append(wall)
        rss.append(peak)
        result = tensorflow(args.tf_python, args.export, path, 1, 0)
        tf_starts.append(result["start_to_first_s"])
        tf_loads.append(result["load_to_first_s"])
        tf_rss.append(result["peak_rss_mib"])
    print()
    print("| | ours | TensorFlow | ours / TF |")
    print("|---|---:|---:|---:|")
    print(f"| start to first answer, s (TF: with import) | {statistics.median(starts):.2f} | {statistics.median(tf_starts):.2f} | {statistics.median(starts) / statistics.median(tf_starts):.2f} |")
    print(f"| start to first answer, s (TF: load + first call only) | {statistics.median(starts):.2f} | {statistics.median(tf_loads):.2f} | {statistics.median(starts) / statistics.median(tf_loads):.2f} |")
    print(f"| peak RSS, MiB | {statistics.median(rss):.0f} | {statistics.median(tf_rss):.0f} | {statistics.median(rss) / statistics.median(tf_rss):.2f} |")


if __name__ == "__main__":
    main()
