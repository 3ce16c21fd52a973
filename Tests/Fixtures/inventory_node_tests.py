#!/usr/bin/env python3
"""Inventory ONNX backend node tests for the operators swift-model-server supports.

Reads a node-test directory (OUT/node from generate_node_tests.py, or
site-packages/onnx/backend/test/data/node of onnx<=1.22 wheels) and writes a TSV
with one row per candidate test directory.

Usage: python inventory_node_tests.py DIR [DIR...] OUT.tsv [--summary OUT.json]
  (DIR: .../node, or the wheel-shipped .../pytorch-converted etc.; same layout)

A row is written when either
  * every node of the model (subgraphs included) is in SUPPORTED ("pure"), or
  * the test's subject operator is in SUPPORTED but the model also uses other
    operators ("mixed", e.g. *_expanded function bodies).
The subject of a single-node model is that node's op; the subject of
`<base>_expanded[_verN]` is the subject of `<base>`.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import re
import sys

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, helper, numpy_helper

SUPPORTED = (
    "Conv Gemm MatMul BatchNormalization Relu LeakyRelu Clip Sigmoid HardSigmoid "
    "HardSwish Tanh Add Sub Mul Div Sum MaxPool AveragePool GlobalAveragePool "
    "GlobalMaxPool LRN Concat Split Slice Pad Reshape Flatten Transpose Squeeze "
    "Unsqueeze Softmax Dropout Identity Shape Gather Constant ConstantOfShape Cast "
    "ReduceMean"
).split()
SUPPORTED_SET = set(SUPPORTED)
MAX_OPSET = 21  # engine scope: opsets 9..21
MIN_OPSET = 9

# Ops whose integer inputs/outputs are "shape-like": int32 is acceptable there.
SHAPE_OPS = {
    "Reshape", "Shape", "Gather", "Slice", "Pad", "Split", "Squeeze", "Unsqueeze",
    "Concat", "Transpose", "Flatten", "ConstantOfShape", "Constant", "Identity",
    "Cast", "ReduceMean",
}
OK_DTYPES = {"float", "int64"}

EXPANDED_RE = re.compile(r"^(?P<base>.+)_expanded(?:_ver(?P<ver>\d+))?$")


def walk_nodes(g):
    for n in g.node:
        yield n
        for a in n.attribute:
            if a.type == AttributeProto.GRAPH:
                yield from walk_nodes(a.g)
            for sg in a.graphs:
                yield from walk_nodes(sg)


def type_str(t) -> str:
    k = t.WhichOneof("value")
    if k == "tensor_type":
        tt = t.tensor_type
        dt = TensorProto.DataType.Name(tt.elem_type).lower() if tt.elem_type else "?"
        if tt.HasField("shape"):
            dims = [
                str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?")
                for d in tt.shape.dim
            ]
            return f"{dt}[{','.join(dims)}]"
        return f"{dt}[unranked]"
    if k == "sequence_type":
        return "seq(" + type_str(t.sequence_type.elem_type) + ")"
    if k == "optional_type":
        return "opt(" + type_str(t.optional_type.elem_type) + ")"
    if k == "map_type":
        return "map"
    return "none"


def base_dtypes(t) -> list[str]:
    k = t.WhichOneof("value")
    if k == "tensor_type":
        return [TensorProto.DataType.Name(t.tensor_type.elem_type).lower()]
    if k == "sequence_type":
        return base_dtypes(t.sequence_type.elem_type)
    if k == "optional_type":
        return base_dtypes(t.optional_type.elem_type)
    return []


def fmt_val(v) -> str:
    if isinstance(v, bytes):
        return v.decode(errors="replace")
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(fmt_val(x) for x in v) + "]"
    if isinstance(v, TensorProto):
        arr = numpy_helper.to_array(v)
        dt = TensorProto.DataType.Name(v.data_type).lower()
        if arr.size <= 8:
            return f"{dt}{list(arr.shape)}={np.array2string(arr.reshape(-1), separator=',')}"
        return f"{dt}{list(arr.shape)}"
    if isinstance(v, onnx.GraphProto):
        return "<graph>"
    return str(v)


def attr_str(node) -> str:
    parts = []
    for a in node.attribute:
        parts.append(f"{a.name}={fmt_val(helper.get_attribute_value(a))}")
    return " ".join(parts)


def load_tensor(path):
    t = TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return t


def storage_kind(t: TensorProto) -> str:
    if t.HasField("raw_data"):
        return "raw"
    typed = ("float_data", "int32_data", "string_data", "int64_data", "double_data", "uint64_data")
    return "typed" if any(len(getattr(t, f)) for f in typed) else "empty"


def subject_of(name: str, single_op: dict[str, str | None]) -> str | None:
    m = EXPANDED_RE.match(name)
    if m and m.group("base") in single_op:
        return single_op[m.group("base")]
    return single_op.get(name)


def analyse(node_dir: str):
    names = sorted(d for d in os.listdir(node_dir) if os.path.isdir(os.path.join(node_dir, d)))
    models = {}
    single_op: dict[str, str | None] = {}
    for name in names:
        m = onnx.load(os.path.join(node_dir, name, "model.onnx"), load_external_data=False)
        models[name] = m
        ops = [n for n in walk_nodes(m.graph)]
        non_const = [n for n in ops if n.op_type != "Constant"]
        if len(ops) == 1:
            single_op[name] = ops[0].op_type
        elif len(non_const) == 1:
            single_op[name] = non_const[0].op_type
        else:
            single_op[name] = None

    rows = []
    for name in names:
        m = models[name]
        g = m.graph
        nodes = list(walk_nodes(g))
        optypes = [(n.domain + "::" if n.domain not in ("", "ai.onnx") else "") + n.op_type for n in nodes]
        subject = subject_of(name, single_op)
        pure = set(optypes) <= SUPPORTED_SET
        if not pure and subject not in SUPPORTED_SET:
            continue
        kind = "pure" if pure else "mixed"
        notes: list[str] = []
        excl: list[str] = []  # reasons that put the case outside the engine's scope

        opsets = {(o.domain or "ai.onnx"): o.version for o in m.opset_import}
        onnx_opset = opsets.get("ai.onnx")
        other_domains = {k: v for k, v in opsets.items() if k != "ai.onnx"}
        if other_domains:
            excl.append("non-default domain " + ",".join(f"{k}:{v}" for k, v in other_domains.items()))
        if m.functions:
            notes.append(f"model-local functions={len(m.functions)}")

        # --- operators
        op_counts = collections.Counter(optypes)
        op_field = ",".join(f"{o}x{c}" if c > 1 else o for o, c in op_counts.items())
        others = sorted(set(optypes) - SUPPORTED_SET)
        if others:
            excl.append("uses ops outside list: " + ",".join(others))
        m_exp = EXPANDED_RE.match(name)
        if m_exp:
            notes.append(f"function expansion of {subject or '?'} ({len(nodes)} nodes)")
        elif len(nodes) > 1:
            notes.append(f"multi-node model ({len(nodes)} nodes)")
        if subject and subject not in SUPPORTED_SET:
            notes.append(f"test of {subject}, built only from supported ops")

        # --- opset: can the model's ai.onnx opset_import be clamped into 9..21?
        if onnx_opset is not None and not (MIN_OPSET <= onnx_opset <= MAX_OPSET):
            target = min(max(onnx_opset, MIN_OPSET), MAX_OPSET)
            changed, semantic = [], []
            for n in nodes:
                if n.op_type not in SUPPORTED_SET or n.domain not in ("", "ai.onnx"):
                    continue
                s_m = onnx.defs.get_schema(n.op_type, onnx_opset)
                s_t = onnx.defs.get_schema(n.op_type, target)
                if s_m.since_version == s_t.since_version:
                    continue
                tag = f"{n.op_type}-{s_m.since_version}->{s_t.since_version}"
                if tag not in changed:
                    changed.append(tag)
                used = {a.name for a in n.attribute}
                gone = sorted(used - set(s_t.attributes))
                if gone:
                    semantic.append(f"{n.op_type} attr {','.join(gone)} not in v{s_t.since_version}")
                if len(s_m.inputs) != len(s_t.inputs) and len([x for x in n.input if x]) > len(s_t.inputs):
                    semantic.append(f"{n.op_type} input count differs")
            rel = ">21" if onnx_opset > MAX_OPSET else "<9"
            if not changed:
                notes.append(f"opset {onnx_opset}{rel}: same schemas at {target}, opset_import can be rewritten to {target}")
            elif not semantic:
                notes.append(f"opset {onnx_opset}{rel}: {','.join(changed)} differ only in types/unused attrs, opset_import can be rewritten to {target}")
            else:
                msg = f"opset {onnx_opset}{rel}: rewriting to {target} needs care ({'; '.join(dict.fromkeys(semantic))})"
                (excl if onnx_opset < MIN_OPSET else notes).append(msg)
            if any(n.op_type in ("Add", "Sub", "Mul", "Div") and any(a.name == "broadcast" for a in n.attribute) for n in nodes):
                excl.append("legacy broadcast/axis attrs (opset<7 broadcasting)")

        # --- dtypes
        _inits = {t.name for t in g.initializer}
        io_types = [type_str(v.type) for v in g.input if v.name not in _inits], [type_str(v.type) for v in g.output]
        all_dt = set()
        for v in list(g.input) + list(g.output):
            all_dt.update(base_dtypes(v.type))
            k = v.type.WhichOneof("value")
            if k in ("sequence_type", "optional_type", "map_type"):
                excl.append(f"{k.split('_')[0]} type ({v.name})")
        # Constant / ConstantOfShape value dtypes
        for n in nodes:
            for a in n.attribute:
                if a.type == AttributeProto.TENSOR:
                    all_dt.add(TensorProto.DataType.Name(a.t.data_type).lower())
                if a.name == "to" and n.op_type in ("Cast",):
                    all_dt.add(TensorProto.DataType.Name(a.i).lower())
        # Intermediate values of multi-node models (via shape inference).
        if len(nodes) > 1:
            try:
                inf = onnx.shape_inference.infer_shapes(m)
                vtype = {v.name: v.type for v in list(inf.graph.value_info) + list(inf.graph.input) + list(inf.graph.output)}
                for v in inf.graph.value_info:
                    all_dt.update(base_dtypes(v.type))
                int_arith = sorted({
                    n.op_type for n in inf.graph.node
                    if n.op_type in ("Add", "Sub", "Mul", "Div") and n.input[0] in vtype
                    and base_dtypes(vtype[n.input[0]]) in (["int64"], ["int32"])
                })
                if int_arith:
                    notes.append("integer (shape) arithmetic: " + ",".join(int_arith) + " on int64")
            except Exception as e:  # noqa: BLE001
                notes.append(f"shape inference failed: {type(e).__name__}")
        bad = sorted(all_dt - OK_DTYPES)
        shape_like = subject in SHAPE_OPS or all(o in SHAPE_OPS for o in op_counts)
        if shape_like and "int32" in bad:
            bad.remove("int32")
            notes.append("int32 tensors (allowed: shape/data-movement op)")
        if bad:
            excl.append("dtype " + ",".join(bad))

        # --- zero-size / scalar tensors and expected values
        # IR<4 models (pytorch-* dirs) also list initializers in graph.input; the
        # input_K.pb files cover only the inputs that are not initializers.
        init_names = {t.name for t in g.initializer}
        runtime_inputs = [vi for vi in g.input if vi.name not in init_names]
        if init_names:
            notes.append(f"{len(g.initializer)} initializers" + (
                f" ({sum(vi.name in init_names for vi in g.input)} also listed in graph.input)"
                if any(vi.name in init_names for vi in g.input) else ""))
        ds_dirs = sorted(d for d in os.listdir(os.path.join(node_dir, name)) if d.startswith("test_data_set_"))
        small_inputs = []
        empty = scalar = nonfinite = False
        storage = collections.Counter()
        for ds in ds_dirs[:1]:
            p = os.path.join(node_dir, name, ds)
            for j, vi in enumerate(runtime_inputs):
                if vi.type.WhichOneof("value") != "tensor_type":
                    continue
                t = load_tensor(os.path.join(p, f"input_{j}.pb"))
                storage[storage_kind(t)] += 1
                arr = numpy_helper.to_array(t)
                if arr.size == 0:
                    empty = True
                if arr.ndim == 0:
                    scalar = True
                dt = TensorProto.DataType.Name(t.data_type).lower()
                if dt in ("int64", "int32") and arr.size <= 8:
                    small_inputs.append(f"{vi.name}={np.array2string(arr.reshape(-1), separator=',')}")
                elif arr.ndim == 0 and dt in ("float", "double", "float16"):
                    small_inputs.append(f"{vi.name}={arr.item():g}")
            for j, vi in enumerate(g.output):
                if vi.type.WhichOneof("value") != "tensor_type":
                    continue
                t = load_tensor(os.path.join(p, f"output_{j}.pb"))
                storage[storage_kind(t)] += 1
                arr = numpy_helper.to_array(t)
                if arr.size == 0:
                    empty = True
                if arr.ndim == 0:
                    scalar = True
                if arr.dtype.kind == "f" and arr.size and not np.all(np.isfinite(arr.astype(np.float64))):
                    nonfinite = True
        if len(ds_dirs) != 1:
            notes.append(f"{len(ds_dirs)} data sets")
        if empty:
            notes.append("zero-size tensor")
        if scalar:
            notes.append("rank-0 tensor")
        if nonfinite:
            notes.append("expected output has NaN/Inf")
        if storage.get("typed"):
            notes.append("pb uses typed *_data fields (not raw_data)")

        # --- per-op features
        top = [n for n in nodes if n.op_type != "Constant"] or nodes
        attrs = "; ".join(
            (f"{n.op_type}: " if len(top) > 1 else "") + attr_str(n) for n in top if n.attribute
        ) if len(top) <= 3 else f"({len(nodes)} nodes, see model)"
        if small_inputs:
            attrs = (attrs + " | " if attrs else "") + "in: " + " ".join(small_inputs)

        for n in nodes:
            A = {a.name: helper.get_attribute_value(a) for a in n.attribute}
            op = n.op_type
            n_in = list(n.input)
            n_out = [o for o in n.output if o]
            if op == "Dropout":
                if len(n_out) > 1:
                    notes.append("Dropout mask output (bool)")
                if len(n_in) >= 3 and n_in[2]:
                    excl.append("Dropout training_mode input")
                if "seed" in A:
                    notes.append("Dropout seed attr")
                if onnx_opset is not None and onnx_opset < 12 and "ratio" in A:
                    notes.append("Dropout ratio attr (pre-12)")
            if op == "BatchNormalization":
                if A.get("training_mode", 0) == 1:
                    excl.append("BatchNormalization training_mode=1")
                if len(n_out) > 1:
                    excl.append(f"BatchNormalization {len(n_out)} outputs")
            if op in ("Conv", "MaxPool", "AveragePool"):
                ap = A.get("auto_pad", b"NOTSET")
                ap = ap.decode() if isinstance(ap, bytes) else ap
                if ap != "NOTSET":
                    notes.append(f"{op} auto_pad={ap}")
                if A.get("dilations") and any(d != 1 for d in A["dilations"]):
                    notes.append(f"{op} dilations={A['dilations']}")
                if A.get("ceil_mode"):
                    notes.append(f"{op} ceil_mode=1")
            if op in ("MaxPool", "AveragePool") and A.get("ceil_mode") and onnx_opset is not None and onnx_opset >= 22:
                # v22 added: "Sliding windows that would start in the right padded
                # region are ignored".  Compare the v<=21 formula with the real output.
                x_vi = next((v for v in g.input if v.name == n_in[0]), None)
                y_vi = next((v for v in g.output if v.name == n.output[0]), None)
                if x_vi is not None and y_vi is not None:
                    xs = [d.dim_value for d in x_vi.type.tensor_type.shape.dim][2:]
                    ys = [d.dim_value for d in y_vi.type.tensor_type.shape.dim][2:]
                    k = A["kernel_shape"]; r = len(k)
                    st = A.get("strides", [1] * r); dl = A.get("dilations", [1] * r)
                    pd = A.get("pads", [0] * (2 * r))
                    old_rule = [
                        -(-(xs[i] + pd[i] + pd[i + r] - dl[i] * (k[i] - 1) - 1) // st[i]) + 1
                        for i in range(r)
                    ]
                    if old_rule != ys:
                        notes.append(f"SPEC-DIFF {op} ceil_mode: expected shape {ys} follows v22 rule (windows starting in right pad dropped); v<=21 formula gives {old_rule}")
            if op == "Conv" and A.get("group", 1) != 1:
                notes.append(f"Conv group={A['group']}")
            if op == "Conv" and len(n_in) >= 3 and n_in[2]:
                notes.append("Conv bias")
            if op == "AveragePool" and A.get("count_include_pad"):
                notes.append("AveragePool count_include_pad=1")
            if op == "MaxPool":
                if len(n_out) > 1:
                    notes.append("MaxPool Indices output (int64)")
                if A.get("storage_order"):
                    notes.append("MaxPool storage_order=1")
            if op == "Pad":
                mode = A.get("mode", b"constant")
                mode = mode.decode() if isinstance(mode, bytes) else mode
                if mode != "constant":
                    notes.append(f"Pad mode={mode}" + (" (opset 19+)" if mode == "wrap" else ""))
                if len(n_in) >= 4 and n_in[3]:
                    notes.append("Pad axes input (opset 18+)")
            if op == "Slice" and len(n_in) >= 5 and n_in[4]:
                idx = [i for i, x in enumerate(runtime_inputs) if x.name == n_in[4]]
                if idx:
                    steps = numpy_helper.to_array(load_tensor(os.path.join(node_dir, name, ds_dirs[0], f"input_{idx[0]}.pb")))
                    if np.any(steps < 0):
                        notes.append("Slice negative steps")
                    if np.any(np.abs(steps) > 1):
                        notes.append("Slice |step|>1")
            if op == "Split":
                if "num_outputs" in A:
                    notes.append(f"Split num_outputs={A['num_outputs']} (opset 18)")
                if len(n_in) >= 2 and n_in[1]:
                    notes.append("Split sizes as input")
                elif "split" in A:
                    notes.append("Split sizes as attr")
            if op == "ReduceMean":
                if A.get("noop_with_empty_axes"):
                    notes.append("ReduceMean noop_with_empty_axes=1")
                if A.get("keepdims", 1) == 0:
                    notes.append("ReduceMean keepdims=0")
                if len(n_in) >= 2 and n_in[1]:
                    notes.append("ReduceMean axes as input (opset 18)")
                elif "axes" not in A:
                    notes.append("ReduceMean no axes (reduce all)")
            if op == "Cast":
                if "saturate" in A:
                    notes.append(f"Cast saturate={A['saturate']}")
                if "round_mode" in A:
                    notes.append(f"Cast round_mode={fmt_val(A['round_mode'])}")
                if "string" in all_dt:
                    notes.append("Cast to/from string")
            if op == "Clip":
                present = [x for x in n_in[1:] if x]
                if present:
                    notes.append(f"Clip min/max as inputs ({len(present)} given)")
                if len(n_in) > 1 and any(x == "" for x in n_in[1:]):
                    notes.append("Clip omitted optional input ('')")
                if "min" in A or "max" in A:
                    notes.append("Clip min/max attrs (pre-11)")
            if op == "LRN":
                notes.append(f"LRN size={A.get('size')}")
            if op == "Gemm":
                if len(n_in) < 3 or not n_in[2]:
                    notes.append("Gemm without C")
                if A.get("transA") or A.get("transB"):
                    notes.append(f"Gemm transA={A.get('transA', 0)} transB={A.get('transB', 0)}")
            if op == "Squeeze" and (len(n_in) < 2 or not n_in[1]) and "axes" not in A:
                notes.append("Squeeze without axes")
            if op == "Softmax" and onnx_opset is not None and onnx_opset < 13:
                notes.append("Softmax pre-13 (2-D coercion semantics)")
            if op == "Shape" and ("start" in A or "end" in A):
                notes.append("Shape start/end (opset 15)")
            if op == "Constant":
                for k in A:
                    if k != "value":
                        notes.append(f"Constant {k}")

        def dedup(xs):
            seen = []
            for x in xs:
                if x not in seen:
                    seen.append(x)
            return seen

        rows.append(
            dict(
                test_name=name,
                subject_op=subject or "",
                kind=kind,
                op_types=op_field,
                opset=str(onnx_opset) + ("".join(f";{k}:{v}" for k, v in other_domains.items())),
                ir_version=str(m.ir_version),
                inputs=" ".join(io_types[0]),
                outputs=" ".join(io_types[1]),
                attributes=attrs,
                suggest_exclude="; ".join(dedup(excl)),
                note="; ".join(dedup(notes)),
            )
        )
    return rows


COLUMNS = [
    "test_name", "subject_op", "kind", "op_types", "opset", "ir_version", "inputs",
    "outputs", "attributes", "suggest_exclude", "note", "source",
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dirs", nargs="+", help="one or more test dirs (e.g. .../data/node), then OUT.tsv")
    ap.add_argument("--summary")
    args = ap.parse_args()
    *dirs, out_tsv = args.dirs
    rows = []
    for d in dirs:
        for r in analyse(d):
            r["source"] = os.path.basename(os.path.normpath(d))
            rows.append(r)
    with open(out_tsv, "w") as f:
        f.write("\t".join(COLUMNS) + "\n")
        for r in rows:
            f.write("\t".join(r[c].replace("\t", " ").replace("\n", " ") for c in COLUMNS) + "\n")
    per = collections.defaultdict(lambda: collections.Counter())
    for r in rows:
        key = r["subject_op"] if r["subject_op"] in SUPPORTED_SET else "(test of another op, supported ops only)"
        per[key]["rows"] += 1
        per[key][r["kind"]] += 1
        per[key]["runnable" if not r["suggest_exclude"] else "excluded"] += 1
    summary = {k: dict(v) for k, v in sorted(per.items())}
    if args.summary:
        with open(args.summary, "w") as f:
            json.dump(summary, f, indent=1)
    tot = collections.Counter()
    for v in per.values():
        tot.update(v)
    print(f"rows={len(rows)} {dict(tot)}", file=sys.stderr)


if __name__ == "__main__":
    main()
