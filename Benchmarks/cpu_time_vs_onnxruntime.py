#!/usr/bin/env python3
"""One-thread engine cost as CPU time, for machines too busy for wall-clock figures: a
preempted process stops accruing CPU time, so a run's user + system seconds do not grow
when neighbours take the core (they still pay for a shared cache and memory bandwidth).
For each side the child is run with N timed runs and with none (same load and warm-up);
the difference / N is the CPU time per inference. ORT and each model-run binary alternate
per round; reported: the median per-round ratio to onnxruntime.

usage: cpu_time_vs_onnxruntime.py --model-run A [B ...] --model M.onnx [--batches 1 8]
           [--repeat 20] [--rounds 3]
Only meaningful on one thread (spinning workers would count as work).
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

ORT_CHILD = r"""
import sys
import numpy as np
import onnxruntime as ort
model, input_path, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3])
options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
feed = {session.get_inputs()[0].name: np.load(input_path)}
session.run(None, feed)
for _ in range(repeat):
    session.run(None, feed)
"""


def cpu_seconds(argv):
    """User + system CPU seconds of one child run to completion."""
    pid = os.fork()
    if pid == 0:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.execvp(argv[0], argv)
    _, status, usage = os.wait4(pid, 0)
    if status != 0:
        sys.exit(f"failed ({status}): {' '.join(argv)}")
    return usage.ru_utime + usage.ru_stime


def per_run(argv_for, repeat):
    """CPU ms per inference: (run with `repeat` timed runs - run with none) / repeat."""
    return (cpu_seconds(argv_for(repeat)) - cpu_seconds(argv_for(0))) / repeat * 1e3


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-run", nargs="+", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import onnx
    graph = onnx.load(args.model, load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    first = next(i for i in graph.input if i.name not in initializers)
    sample_shape = [d.dim_value for d in first.type.tensor_type.shape.dim[1:]]
    print("| batch | model-run | ours CPU ms | onnxruntime CPU ms | ratio (median of rounds) | per round |")
    print("|---:|---|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for batch in args.batches:
            x = np.random.default_rng(0).uniform(-1, 1, [batch, *sample_shape]).astype(np.float32)
            path = os.path.join(tmp, f"x{batch}.npy")
            np.save(path, x)
            repeat = max(2, args.repeat // batch)
            orts, ours = [], {b: [] for b in args.model_run}
            for _ in range(args.rounds):
                orts.append(per_run(lambda n: [sys.executable, "-c", ORT_CHILD, args.model, path, str(n)], repeat))
                for binary in args.model_run:
                    ours[binary].append(per_run(lambda n: [binary, args.model, "--input", path, "--threads", "1",
                                                           "--repeat", str(n)], repeat))
            for binary in args.model_run:
                ratios = [o / r for o, r in zip(ours[binary], orts)]
                print(f"| {batch} | {binary} | {np.median(ours[binary]):.1f} | {np.median(orts):.1f} | "
                      f"{np.median(ratios):.2f} | {' '.join(f'{r:.2f}' for r in ratios)} |", flush=True)


if __name__ == "__main__":
    main()
