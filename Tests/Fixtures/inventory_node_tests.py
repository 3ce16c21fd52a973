#!/usr/bin/env python3
"""Write Tests/Fixtures/node_tests.txt: the ONNX backend test cases the Swift harness runs.

Usage (with a Python that has onnx==1.17.0, see node_tests_README.md):
    eval "$(scripts/node-tests.sh PYTHON)"
    PYTHON Tests/Fixtures/inventory_node_tests.py \
        --generated "$ONNX_NODE_TEST_DATA" --shipped "$ONNX_SHIPPED_TEST_DATA" \
        -o Tests/Fixtures/node_tests.txt

--generated is the root written by `cmd_tools generate-data` (suite `node` is read from
it); --shipped is the wheel's onnx/backend/test/data (suites pytorch-converted,
pytorch-operator, simple). Each case is SUITE/CASE with CASE/model.onnx and
CASE/test_data_set_N/{input,output}_K.pb.

A case is in scope when every node (subgraphs included) is an ai.onnx op in SUPPORTED
and every tensor is float32/int64/int32/bool; a tensor may also be float64/int8/uint8
when only Cast nodes produce or read it. Inference only: training-mode
BatchNormalization/Dropout and the MaxPool Indices output are excluded.
Cases that are not in scope but whose subject operator (the single non-Constant node,
or the base test of `*_expanded`) is in SUPPORTED are listed as `# excluded` comments.
"""
from __future__ import annotations

import argparse
import collections
import os
import re
import sys

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, numpy_helper

SUPPORTED = (
    "Conv Gemm MatMul BatchNormalization Relu LeakyRelu Clip Sigmoid HardSigmoid "
    "HardSwish Tanh Add Sub Mul Div Sum MaxPool AveragePool GlobalAveragePool "
    "GlobalMaxPool LRN Concat Split Slice Pad Reshape Flatten Transpose Squeeze "
    "Unsqueeze Softmax Dropout Identity Shape Gather Constant ConstantOfShape Cast "
    "ReduceMean QuantizeLinear DequantizeLinear DynamicQuantizeLinear QLinearConv ConvInteger "
    "QLinearMatMul MatMulInteger"
).split()
# Operators that read or write quantized (uint8/int8) tensors: a uint8/int8 value is in scope
# when every node touching it is one of these (or Cast).
QUANTIZED_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "ConvInteger",
                 "QLinearMatMul", "MatMulInteger", "Cast"}
QUANTIZED_DTYPES = {TensorProto.INT8, TensorProto.UINT8}
CORE_DTYPES = {TensorProto.FLOAT, TensorProto.INT64, TensorProto.INT32, TensorProto.BOOL}
CAST_ONLY_DTYPES = {TensorProto.DOUBLE, TensorProto.INT8, TensorProto.UINT8}
SHIPPED_SUITES = ["pytorch-converted", "pytorch-operator", "simple"]
EXPANDED_RE = re.compile(r"^(?P<base>.+)_expanded(?:_ver\d+)?$")


def dtype_name(code: int) -> str:
    return TensorProto.DataType.Name(code).lower()


def walk_nodes(graph):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == AttributeProto.GRAPH:
                yield from walk_nodes(attr.g)
            for sub in attr.graphs:
                yield from walk_nodes(sub)


def subject_op(model) -> str | None:
    ops = [n.op_type for n in walk_nodes(model.graph)]
    non_const = [op for op in ops if op != "Constant"]
    if len(ops) == 1:
        return ops[0]
    return non_const[0] if len(non_const) == 1 else None


def value_types(model) -> dict[str, onnx.TypeProto]:
    """Types of graph inputs/outputs/initializers plus intermediates from shape inference."""
    types = {}
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - fall back to the declared types
        inferred = model
    g = inferred.graph
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        types[vi.name] = vi.type
    for init in g.initializer:
        types.setdefault(init.name, onnx.helper.make_tensor_type_proto(init.data_type, init.dims))
    return types


def read_bool_input(case_dir: str, graph, name: str) -> bool | None:
    """Value of a runtime graph input (first data set), if it is one."""
    inits = {t.name for t in graph.initializer}
    runtime = [vi.name for vi in graph.input if vi.name not in inits]
    if name not in runtime:
        return None
    t = TensorProto()
    with open(os.path.join(case_dir, "test_data_set_0", f"input_{runtime.index(name)}.pb"), "rb") as f:
        t.ParseFromString(f.read())
    return bool(np.any(numpy_helper.to_array(t)))


def reasons_for(case_dir: str, model) -> list[str]:
    """Why the case is out of scope, most basic reason first; empty if it is in scope."""
    g = model.graph
    nodes = list(walk_nodes(g))
    reasons: list[str] = []

    for vi in list(g.input) + list(g.output):
        kind = vi.type.WhichOneof("value")
        if kind != "tensor_type":
            reasons.append(f"{kind.replace('_type', '')} type ({vi.name})")

    # dtypes: CORE anywhere; CAST_ONLY only on values whose producers/consumers are all Cast.
    touching = collections.defaultdict(set)
    for n in nodes:
        for name in list(n.input) + list(n.output):
            if name:
                touching[name].add(n.op_type)
    bad = set()
    for name, t in value_types(model).items():
        if t.WhichOneof("value") != "tensor_type":
            continue
        dt = t.tensor_type.elem_type
        if dt in CORE_DTYPES:
            continue
        if dt in CAST_ONLY_DTYPES and touching[name] <= {"Cast"}:
            continue
        if dt in QUANTIZED_DTYPES and touching[name] <= QUANTIZED_OPS:
            continue
        bad.add(dtype_name(dt))
    for n in nodes:  # tensors that never become graph values (e.g. ConstantOfShape value)
        for a in n.attribute:
            if a.type == AttributeProto.TENSOR and a.t.data_type not in CORE_DTYPES:
                bad.add(dtype_name(a.t.data_type))
            if a.type in (AttributeProto.STRING, AttributeProto.STRINGS) and n.op_type == "Constant":
                bad.add("string")
    if bad:
        reasons.append("unsupported dtype " + ",".join(sorted(bad)))
    domains = sorted({o.domain for o in model.opset_import if o.domain not in ("", "ai.onnx")})
    if domains:
        reasons.append("domain " + ",".join(domains))
    others = sorted({n.op_type for n in nodes if n.op_type not in SUPPORTED or n.domain not in ("", "ai.onnx")})
    if others:
        reasons.append("uses unsupported " + ",".join(others))

    for n in nodes:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        outs = [o for o in n.output if o]
        if n.op_type == "BatchNormalization" and (attrs.get("training_mode", 0) or len(outs) > 1):
            reasons.append("BatchNormalization training_mode=1")
        if n.op_type == "Dropout" and len(n.input) > 2 and n.input[2]:
            if read_bool_input(case_dir, g, n.input[2]) is not False:
                reasons.append("Dropout training_mode=true")
        if n.op_type == "MaxPool" and len(outs) > 1:
            reasons.append("MaxPool Indices output")
        if n.op_type in ("Add", "Sub", "Mul", "Div") and "broadcast" in attrs:
            reasons.append(f"{n.op_type} legacy broadcast attribute (opset < 7)")
    return list(dict.fromkeys(reasons))


def cases(root: str):
    for name in sorted(os.listdir(root)):
        d = os.path.join(root, name)
        if os.path.isfile(os.path.join(d, "model.onnx")):
            yield name, d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generated", required=True, help="generate-data output root (has node/)")
    ap.add_argument("--shipped", required=True, help="site-packages/onnx/backend/test/data")
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args()

    suites = [("node", os.path.join(args.generated, "node"))]
    suites += [(s, os.path.join(args.shipped, s)) for s in SHIPPED_SUITES]
    included, excluded = [], []
    counts = collections.Counter()
    for suite, root in suites:
        models = {name: onnx.load(os.path.join(d, "model.onnx")) for name, d in cases(root)}
        subjects = {name: subject_op(m) for name, m in models.items()}
        for name, model in models.items():
            m = EXPANDED_RE.match(name)
            subject = subjects.get(m.group("base")) if m else subjects[name]
            reasons = reasons_for(os.path.join(root, name), model)
            if not reasons:
                included.append(f"{suite}/{name}")
                counts[suite, "in"] += 1
            elif subject in SUPPORTED:
                excluded.append(f"# excluded {suite}/{name}: {reasons[0]}")
                counts[suite, "excluded"] += 1

    per_suite = ", ".join(f"{s} {counts[s, 'in']}" for s, _ in suites)
    header = [
        "# ONNX backend test cases for the Swift node-test harness. Generated file; see",
        "# Tests/Fixtures/node_tests_README.md. Produced with onnx==1.17.0:",
        "#   eval \"$(scripts/node-tests.sh PYTHON)\"   # cmd_tools generate-data into the cache",
        "#   PYTHON Tests/Fixtures/inventory_node_tests.py --generated \"$ONNX_NODE_TEST_DATA\" \\",
        "#       --shipped \"$ONNX_SHIPPED_TEST_DATA\" -o Tests/Fixtures/node_tests.txt",
        "# One case per line: SUITE/CASE, the directory ROOT/SUITE/CASE (model.onnx,",
        "# test_data_set_N/{input,output}_K.pb). ROOT is $ONNX_NODE_TEST_DATA for SUITE node",
        "# (written by `python -m onnx.backend.test.cmd_tools generate-data`) and",
        "# $ONNX_SHIPPED_TEST_DATA (<site-packages>/onnx/backend/test/data, shipped in the wheel)",
        "# for pytorch-converted, pytorch-operator and simple.",
        "# In scope: every node is one of",
        "#   " + " ".join(SUPPORTED[:9]),
        "#   " + " ".join(SUPPORTED[9:21]),
        "#   " + " ".join(SUPPORTED[21:33]),
        "#   " + " ".join(SUPPORTED[33:39]),
        "#   " + " ".join(SUPPORTED[39:]) + ";",
        "# every tensor float32/int64/int32/bool (Cast may also read/write float64/int8/uint8,",
        "# the quantization operators uint8/int8);",
        "# inference only. Blank lines and lines starting with '#' are not cases; the",
        "# '# excluded SUITE/CASE: reason' lines list the cases of listed operators left out.",
        f"# In scope: {len(included)} ({per_suite}); excluded below: {len(excluded)}.",
        "",
    ]
    with open(args.output, "w") as f:
        f.write("\n".join(header + included + [""] + excluded) + "\n")
    print(f"onnx {onnx.__version__}: in scope {len(included)} ({per_suite}), excluded {len(excluded)}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
