#!/usr/bin/env python3
"""Per-operator time of `model-run --profile`, robust to a shared machine: runs the profile
N times (optionally alternating two model-run builds, e.g. before/after a change) and
reports, per op type, the median over runs of its summed time, and the slowest steps by
their fastest run (a preempted vCPU inflates one run's step, never all of them).

usage: profile_steps.py --model M.onnx --input x.npy [--runs 5] [--threads 1] [--top 12]
           --model-run .build/release/model-run [--model-run OTHER/model-run ...]
"""
import argparse
import collections
import re
import statistics
import subprocess

LINE = re.compile(r"^\s*([0-9.]+) ms\s+[0-9.]+%\s+(\S+) (.+?)(?:\s+[0-9.]+ GFLOP/s)?$")


def profile(binary, model, input_path, threads):
    out = subprocess.run([binary, model, "--input", input_path, "--profile", "--threads", str(threads)],
                         check=True, capture_output=True, text=True).stdout
    steps = {}
    for line in out.splitlines():
        match = LINE.match(line)
        if match and match.group(2) != "all":
            steps[(match.group(2), match.group(3))] = float(match.group(1))
    return steps


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-run", action="append", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    results = {binary: [] for binary in args.model_run}
    for _ in range(args.runs):
        for binary in args.model_run:
            results[binary].append(profile(binary, args.model, args.input, args.threads))
    for binary, runs in results.items():
        totals = [sum(run.values()) for run in runs]
        print(f"== {binary}: total median {statistics.median(totals):.2f} ms (runs: {' '.join(f'{t:.1f}' for t in totals)})")
        by_type = collections.defaultdict(list)
        for run in runs:
            sums = collections.Counter()
            for (op, _), ms in run.items():
                sums[op] += ms
            for op, ms in sums.items():
                by_type[op].append(ms)
        for op, values in sorted(by_type.items(), key=lambda item: -statistics.median(item[1])):
            print(f"  {statistics.median(values):9.3f} ms  all {op} ({len([k for k in runs[0] if k[0] == op])} steps)")
        best = {key: min(run.get(key, float("inf")) for run in runs) for key in runs[0]}
        for (op, name), ms in sorted(best.items(), key=lambda item: -item[1])[: args.top]:
            print(f"  {ms:9.3f} ms  {op} {name}")


if __name__ == "__main__":
    main()
