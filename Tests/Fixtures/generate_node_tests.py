#!/usr/bin/env python3
"""Write the ONNX backend *node* tests to disk.

Since onnx 1.2x the wheel no longer ships onnx/backend/test/data/node, and
`python -m onnx.backend.test.cmd_tools generate-data` only writes the
"simple"/"real" model tests.  The node tests live in memory
(onnx.backend.test.case.node.collect_testcases()).  This script serialises
them with exactly the same layout and helpers as cmd_tools.generate_data:

    OUT/node/<test_name>/model.onnx
    OUT/node/<test_name>/test_data_set_0/input_<k>.pb   (TensorProto, or
    OUT/node/<test_name>/test_data_set_0/output_<k>.pb   Sequence/Optional/MapProto)

Usage:  python generate_node_tests.py -o /tmp/onnx-node-data [--only NAME_FILE]
  --only  a text file with one test name per line (e.g. first column of
          node_tests.tsv); only those cases are written.
"""
from __future__ import annotations

import argparse
import os
import shutil

import numpy as np

from onnx import TensorProto, numpy_helper
from onnx.backend.test.case import node as node_cases


def _serialize(value, value_info) -> bytes:
    t = value_info.type
    if t.HasField("map_type"):
        return numpy_helper.from_dict(value, value_info.name).SerializeToString()
    if t.HasField("sequence_type"):
        return numpy_helper.from_list(value, value_info.name).SerializeToString()
    if t.HasField("optional_type"):
        return numpy_helper.from_optional(value, value_info.name).SerializeToString()
    assert t.HasField("tensor_type")
    if isinstance(value, TensorProto):
        return value.SerializeToString()
    return numpy_helper.from_array(np.asarray(value), value_info.name).SerializeToString()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--only", help="file with test names, one per line (TSV ok: first column)")
    args = ap.parse_args()

    only = None
    if args.only:
        with open(args.only) as f:
            only = {
                line.split("\t", 1)[0].strip()
                for line in f
                if line.strip() and not line.startswith("test_name")
            }

    cases = node_cases.collect_testcases()
    n = 0
    for case in cases:
        if only is not None and case.name not in only:
            continue
        out = os.path.join(args.output, "node", case.name)
        if os.path.exists(out):
            shutil.rmtree(out)
        os.makedirs(out)
        with open(os.path.join(out, "model.onnx"), "wb") as f:
            f.write(case.model.SerializeToString())
        g = case.model.graph
        for i, (inputs, outputs) in enumerate(case.data_sets):
            ds = os.path.join(out, f"test_data_set_{i}")
            os.makedirs(ds)
            for j, v in enumerate(inputs):
                with open(os.path.join(ds, f"input_{j}.pb"), "wb") as f:
                    f.write(_serialize(v, g.input[j]))
            for j, v in enumerate(outputs):
                with open(os.path.join(ds, f"output_{j}.pb"), "wb") as f:
                    f.write(_serialize(v, g.output[j]))
        n += 1
    print(f"wrote {n} node test cases to {os.path.join(args.output, 'node')}")


if __name__ == "__main__":
    main()
