#!/usr/bin/env python3
"""Cross-check node_tests.tsv against onnx's Python reference evaluator.

For every row with an empty `suggest_exclude`, clamp the ai.onnx opset_import
into 9..21 (what a 9..21 engine would see after rewriting), run
onnx.reference.ReferenceEvaluator on test_data_set_0 and compare with the
stored outputs (rtol 1e-3, atol 1e-5).  This checks that the opset rewrite
does not change results; it does not test the Swift engine.

Usage: python verify_node_tests.py NODE_DIR node_tests.tsv
"""
import csv
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper
from onnx.reference import ReferenceEvaluator


def main():
    node_dir, tsv = sys.argv[1], sys.argv[2]
    rows = [r for r in csv.DictReader(open(tsv), delimiter="\t") if not r["suggest_exclude"]]
    ok = fail = 0
    for r in rows:
        d = os.path.join(node_dir, r["test_name"])
        m = onnx.load(os.path.join(d, "model.onnx"))
        for o in m.opset_import:
            if o.domain in ("", "ai.onnx"):
                o.version = min(max(o.version, 9), 21)
        m.ir_version = min(m.ir_version, 10)
        try:
            onnx.checker.check_model(m)
            init = {t.name for t in m.graph.initializer}
            ins = [vi for vi in m.graph.input if vi.name not in init]
            ds = os.path.join(d, "test_data_set_0")
            feeds = {}
            for j, vi in enumerate(ins):
                t = TensorProto()
                t.ParseFromString(open(os.path.join(ds, f"input_{j}.pb"), "rb").read())
                feeds[vi.name] = numpy_helper.to_array(t)
            outs = ReferenceEvaluator(m).run(None, feeds)
            for j, got in enumerate(outs):
                t = TensorProto()
                t.ParseFromString(open(os.path.join(ds, f"output_{j}.pb"), "rb").read())
                exp = numpy_helper.to_array(t)
                got = np.asarray(got)
                assert exp.shape == got.shape, (exp.shape, got.shape)
                np.testing.assert_allclose(got.astype(np.float64), exp.astype(np.float64), rtol=1e-3, atol=1e-5)
            ok += 1
        except Exception as e:  # noqa: BLE001
            fail += 1
            print("FAIL", r["test_name"], type(e).__name__, str(e)[:200])
    print(f"{ok} passed, {fail} failed")
    sys.exit(1 if fail else 0)


if __name__ == "__main__":
    main()
