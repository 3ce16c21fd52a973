"""Deterministic mutation fuzzing of model loading: no model file may stop the process.

Requirement (issue 15): any bytes in a version directory end as a load error that names the
problem, never a crash (a Swift trap is SIGILL/SIGTRAP, an allocation past memory SIGKILL).
`model-run` (release) loads each mutated model, and runs the ONNX ones once on zeros of their
declared input shapes as the server's warm-up does; it must exit on its own (0, or non-zero
with a message on stderr), never by a signal.

Inputs, all from fixed seeds:
  * small ONNX models built here with the `onnx` package (one per operator family the engine
    implements, rank-0 inputs included), mutated three ways: semantic edits through the onnx
    API (rank-0 / huge / zero input shapes, extreme attribute values, wrong initializer sizes,
    dropped inputs, swapped op types), protobuf wire-format edits that need no schema (a varint
    set to an extreme value, a field dropped or repeated, a bytes field cut or flipped), and
    raw byte flips / truncations;
  * the committed SavedModel fixtures (Tests/Fixtures/savedmodels/*/export: TF1 graph, TF2
    module, Keras), with saved_model.pb edited at the wire level, variables.index rewritten as
    a valid leveldb table (checksums recomputed, so the reader gets past them) whose
    BundleEntryProtos have bad offsets, sizes, shards, dtypes and shapes, or its blocks
    damaged, and the data shard truncated;
  * every file under Tests/Fixtures/load_crashers/ (inputs that once crashed: regressions).

Budget: FUZZ_SECONDS (default 75 s) of model-run processes on two workers; the case list is
fixed by the seed and cut at the budget, so a slow machine runs a prefix of the same list.
"""
import concurrent.futures
import os
import pathlib
import random
import shutil
import struct
import subprocess
import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

ROOT = pathlib.Path(__file__).resolve().parents[2]
CRASHERS = ROOT / "Tests" / "Fixtures" / "load_crashers"
SAVEDMODELS = ROOT / "Tests" / "Fixtures" / "savedmodels"
SEED = int(os.environ.get("FUZZ_SEED", "20261207"))  # fixed in CI; other values explore
BUDGET = float(os.environ.get("FUZZ_SECONDS", "75"))
RUN_TIMEOUT = 60.0  # s for one model-run; longer is a hang (a finding too)
EXTREMES = [0, 1, 2, 3, -1, -2, (1 << 31) - 1, 1 << 31, 1 << 32, 1 << 40, 1 << 62, (1 << 63) - 1, -(1 << 63),
            -(1 << 31), 65535]

pytestmark = pytest.mark.timeout(BUDGET + 240)


@pytest.fixture(scope="module")
def model_run():
    value = os.environ.get("MODEL_RUN")
    if not value:
        pytest.fail("MODEL_RUN is not set: path of the release model-run binary (run scripts/test.sh)")
    return pathlib.Path(value)


def run_model(model_run, path, arguments=()):
    """(finding or None, returncode, stderr tail) for one model-run of `path`."""
    env = dict(os.environ, SWIFT_BACKTRACE="enable=no")  # a crash ends at once, without symbolication
    try:
        result = subprocess.run([str(model_run), str(path), *arguments], capture_output=True, timeout=RUN_TIMEOUT, env=env)
    except subprocess.TimeoutExpired:
        return f"no exit within {RUN_TIMEOUT} s (hang)", None, ""
    tail = result.stderr.decode(errors="replace")[-1500:]
    if result.returncode < 0 or result.returncode >= 128:
        return f"killed by a signal (exit {result.returncode})", result.returncode, tail
    if result.returncode != 0 and not tail.strip():
        return f"exit {result.returncode} without a message", result.returncode, tail
    return None, result.returncode, tail


# --------------------------------------------------------------------------- protobuf wire format

def read_varint(data, position):
    value, shift = 0, 0
    while True:
        if position >= len(data) or shift > 63:
            raise ValueError("bad varint")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7


def varint(value):
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def parse(data, depth=0):
    """A message as [field, wiretype, value] entries; length-delimited values that parse as
    messages are kept as bytes but marked parseable (entry[3]). Raises on malformed input."""
    fields, position = [], 0
    while position < len(data):
        key, position = read_varint(data, position)
        number, wiretype = key >> 3, key & 7
        if number == 0:
            raise ValueError("field 0")
        if wiretype == 0:
            value, position = read_varint(data, position)
        elif wiretype == 1:
            value, position = data[position:position + 8], position + 8
        elif wiretype == 5:
            value, position = data[position:position + 4], position + 4
        elif wiretype == 2:
            length, position = read_varint(data, position)
            value, position = data[position:position + length], position + length
        else:
            raise ValueError("wiretype")
        if position > len(data):
            raise ValueError("truncated")
        fields.append([number, wiretype, value])
    return fields


def serialize(fields):
    out = bytearray()
    for number, wiretype, value in fields:
        out += varint(number << 3 | wiretype)
        if wiretype == 0:
            out += varint(value)
        elif wiretype == 2:
            out += varint(len(value)) + value
        else:
            out += value
    return bytes(out)


def nested(data, depth=0):
    """Every (path, fields) of `data` and its parseable sub-messages, outermost first."""
    try:
        fields = parse(data)
    except (ValueError, IndexError):
        return []
    found = [((), fields)]
    if depth < 12:
        for index, (_, wiretype, value) in enumerate(fields):
            if wiretype == 2 and value:
                found += [((index,) + path, sub) for path, sub in nested(value, depth + 1)]
    return found


def rebuild(data, path, new_fields):
    """`data` with the sub-message at `path` replaced by `new_fields`."""
    fields = parse(data)
    if not path:
        return serialize(new_fields)
    index = path[0]
    fields[index][2] = rebuild(fields[index][2], path[1:], new_fields)
    return serialize(fields)


def wire_mutation(data, rng):
    """One schema-free edit: a varint set to an extreme, a field dropped or repeated, a bytes
    field cut, extended or flipped."""
    messages = [(path, fields) for path, fields in nested(data) if fields]
    if not messages:
        return data
    path, fields = rng.choice(messages)
    fields = [list(entry) for entry in fields]
    index = rng.randrange(len(fields))
    number, wiretype, value = fields[index]
    kind = rng.random()
    if wiretype == 0 and kind < 0.6:
        fields[index][2] = rng.choice(EXTREMES) & ((1 << 64) - 1)
    elif kind < 0.75:
        del fields[index]
    elif kind < 0.85:
        fields.insert(index, list(fields[index]))
    elif wiretype == 2 and value:
        cut = bytearray(value)
        choice = rng.random()
        if choice < 0.4:
            cut = cut[:rng.randrange(len(cut))]
        elif choice < 0.7:
            cut[rng.randrange(len(cut))] ^= 1 << rng.randrange(8)
        else:
            cut += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))
        fields[index][2] = bytes(cut)
    elif wiretype == 5:
        fields[index][2] = struct.pack("<I", rng.choice([0, 0xFFFFFFFF, 0x7F800000, 0x7FC00000, 1]))
    else:
        fields[index][2] = rng.choice(EXTREMES) & ((1 << 64) - 1)
        fields[index][1] = 0
    return rebuild(data, path, fields)


def byte_mutation(data, rng):
    data = bytearray(data)
    choice = rng.random()
    if choice < 0.3 and data:
        return bytes(data[:rng.randrange(len(data))])
    for _ in range(rng.randrange(1, 6)):
        if data:
            data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


# --------------------------------------------------------------------------- ONNX seeds

def value_info(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def model(nodes, inputs, outputs, initializers=(), opset=13):
    graph = helper.make_graph(nodes, "fuzz", inputs, outputs, list(initializers))
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    proto.ir_version = 8
    return proto


def ints(name, values):
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def floats(name, shape, seed=0):
    return numpy_helper.from_array(np.random.default_rng(seed).standard_normal(shape).astype(np.float32), name)


def onnx_seeds():
    """name -> ModelProto: one small model per operator family, plus the issue's rank-0 cases."""
    x4 = [value_info("x", [1, 2, 4, 4])]
    y = [value_info("y", None)]
    seeds = {
        # Issue 15's two crashing models.
        "split_rank0": model([helper.make_node("Split", ["x"], ["a", "b"], axis=0)],
                             [value_info("x", [])], [value_info("a", None), value_info("b", None)]),
        "concat_rank0": model([helper.make_node("Concat", ["x", "z"], ["y"], axis=0)],
                              [value_info("x", []), value_info("z", [])], y),
        "split": model([helper.make_node("Split", ["x", "s"], ["a", "b"], axis=1)], x4,
                       [value_info("a", None), value_info("b", None)], [ints("s", [1, 1])]),
        "concat": model([helper.make_node("Concat", ["x", "x"], ["y"], axis=1)], x4, y),
        "conv_bn_relu": model([helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], strides=[1, 1],
                                                dilations=[1, 1], group=1, kernel_shape=[3, 3]),
                               helper.make_node("BatchNormalization", ["c", "sc", "bi", "me", "va"], ["n"], epsilon=1e-5),
                               helper.make_node("Relu", ["n"], ["y"])], x4, y,
                              [floats("w", [3, 2, 3, 3]), floats("b", [3], 1), floats("sc", [3], 2), floats("bi", [3], 3),
                               floats("me", [3], 4), numpy_helper.from_array(np.ones(3, np.float32), "va")]),
        "pad_conv": model([helper.make_node("Pad", ["x", "p"], ["q"]),
                           helper.make_node("Conv", ["q", "w"], ["y"], group=2)], x4, y,
                          [ints("p", [0, 0, 1, 1, 0, 0, 1, 1]), floats("w", [2, 1, 3, 3])]),
        "pools": model([helper.make_node("MaxPool", ["x"], ["m"], kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 1, 1]),
                        helper.make_node("AveragePool", ["m"], ["a"], kernel_shape=[2, 2], auto_pad="SAME_UPPER"),
                        helper.make_node("GlobalAveragePool", ["a"], ["y"])], x4, y),
        "gemm_softmax": model([helper.make_node("Flatten", ["x"], ["f"], axis=1),
                               helper.make_node("Gemm", ["f", "w", "b"], ["g"], transB=1),
                               helper.make_node("Softmax", ["g"], ["y"], axis=-1)], x4, y,
                              [floats("w", [5, 32]), floats("b", [5], 1)]),
        "shape_arith": model([helper.make_node("Shape", ["x"], ["s"]),
                              helper.make_node("Gather", ["s", "i"], ["g"], axis=0),
                              helper.make_node("Unsqueeze", ["g", "ax"], ["u"]),
                              helper.make_node("Concat", ["u", "m"], ["t"], axis=0),
                              helper.make_node("Reshape", ["x", "t"], ["y"])], x4, y,
                             [ints("i", 0), ints("ax", [0]), ints("m", [-1])]),
        "slice_transpose": model([helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["s"]),
                                  helper.make_node("Transpose", ["s"], ["y"], perm=[0, 3, 1, 2])], x4, y,
                                 [ints("st", [0, -1]), ints("en", [4, -5]), ints("ax", [2, 3]), ints("sp", [2, -1])]),
        "squeeze_reduce": model([helper.make_node("ReduceMean", ["x"], ["r"], axes=[2, 3], keepdims=1),
                                 helper.make_node("Squeeze", ["r", "ax"], ["y"])], x4, y, [ints("ax", [2, 3])]),
        "constant_of_shape": model([helper.make_node("ConstantOfShape", ["sh"], ["c"],
                                                     value=numpy_helper.from_array(np.array([2], np.float32))),
                                    helper.make_node("Add", ["x", "c"], ["y"])], x4, y, [ints("sh", [1, 2, 4, 4])]),
        "cast_clip_misc": model([helper.make_node("Clip", ["x", "lo", "hi"], ["c"]),
                                 helper.make_node("Cast", ["c"], ["i"], to=TensorProto.INT64),
                                 helper.make_node("Cast", ["i"], ["f"], to=TensorProto.FLOAT),
                                 helper.make_node("Mul", ["f", "x"], ["m"]),
                                 helper.make_node("Max", ["m", "x"], ["y"])], x4, y,
                                [numpy_helper.from_array(np.array(-1, np.float32), "lo"),
                                 numpy_helper.from_array(np.array(1, np.float32), "hi")]),
        "matmul_split18": model([helper.make_node("MatMul", ["x", "w"], ["m"]),
                                 helper.make_node("Split", ["m"], ["a", "b", "c"], axis=-1, num_outputs=3),
                                 helper.make_node("Sum", ["a", "b", "c"], ["y"])],
                                [value_info("x", ["N", 3, 4])], y, [floats("w", [4, 7])], opset=18),
        "dropout_identity": model([helper.make_node("Dropout", ["x"], ["d", "mask"]),
                                   helper.make_node("Identity", ["d"], ["y"])], x4, y),
    }
    return seeds


def semantic_mutation(proto, rng):
    """An edit made through the onnx API, aimed at the planner's arithmetic."""
    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    graph = proto.graph
    choice = rng.randrange(9)
    if choice == 0 and graph.input:  # an input's shape: rank 0, a zero, a huge or a negative dimension
        dims = graph.input[rng.randrange(len(graph.input))].type.tensor_type.shape.dim
        edit = rng.randrange(4)
        if edit == 0:
            del dims[:]
        elif dims:
            dim = dims[rng.randrange(len(dims))]
            dim.dim_value = [0, 1 << 31, 1 << 40, (1 << 63) - 1][rng.randrange(4)] if edit < 3 else 0
            if edit == 3:
                dims.add().dim_value = rng.choice([0, 1, 3, 1 << 33])
    elif choice == 1 and graph.node:  # an int or ints attribute set to an extreme
        node = graph.node[rng.randrange(len(graph.node))]
        if node.attribute:
            attribute = node.attribute[rng.randrange(len(node.attribute))]
            if attribute.type == onnx.AttributeProto.INT:
                attribute.i = rng.choice(EXTREMES)
            elif attribute.type == onnx.AttributeProto.INTS and attribute.ints:
                attribute.ints[rng.randrange(len(attribute.ints))] = rng.choice(EXTREMES)
        else:
            node.attribute.append(helper.make_attribute(rng.choice(["axis", "group", "num_outputs", "keepdims"]),
                                                        rng.choice(EXTREMES)))
    elif choice == 2 and graph.initializer:  # an int64 initializer's values set to extremes
        tensor = graph.initializer[rng.randrange(len(graph.initializer))]
        array = numpy_helper.to_array(tensor).copy()
        if array.size and array.dtype == np.int64:
            array.flat[rng.randrange(array.size)] = rng.choice(EXTREMES)
            tensor.CopyFrom(numpy_helper.from_array(array, tensor.name))
        elif tensor.dims:
            tensor.dims[rng.randrange(len(tensor.dims))] = rng.choice([0, 1, 7, 1 << 31])
    elif choice == 3 and graph.initializer:  # an initializer reshaped without its data
        tensor = graph.initializer[rng.randrange(len(graph.initializer))]
        del tensor.dims[:]
        tensor.dims.extend(rng.choice([[], [0], [1 << 31, 1 << 31], [3, 0, 1 << 40], [1, 1, 1, 1, 1]]))
    elif choice == 4 and graph.node:  # a node loses or gains an input / output
        node = graph.node[rng.randrange(len(graph.node))]
        field = node.input if rng.random() < 0.6 else node.output
        if field and rng.random() < 0.6:
            del field[rng.randrange(len(field))]
        else:
            field.append(rng.choice(["", "x", "y", graph.node[0].output[0]]))
    elif choice == 5 and graph.node:  # another op type, same inputs and attributes
        node = graph.node[rng.randrange(len(graph.node))]
        node.op_type = rng.choice(["Split", "Concat", "Gather", "Squeeze", "Unsqueeze", "Slice", "Pad", "Softmax",
                                   "ReduceMean", "Transpose", "Flatten", "Conv", "MaxPool", "Gemm", "MatMul",
                                   "BatchNormalization", "Reshape", "ConstantOfShape", "Sum", "Max", "Clip"])
    elif choice == 6:  # the default opset moved
        proto.opset_import[0].version = rng.choice([1, 4, 7, 10, 11, 12, 17, 18, 22, 23])
    elif choice == 7 and graph.node:  # an attribute of another kind
        node = graph.node[rng.randrange(len(graph.node))]
        node.attribute.append(helper.make_attribute(rng.choice(["axis", "axes", "perm", "pads", "split", "value"]),
                                                    rng.choice([[0, 0], [-1], [1 << 40], 1.5, "s", [-(1 << 63)], 7])))
    else:  # an input made rank 0 and a second mutation
        if graph.input:
            del graph.input[0].type.tensor_type.shape.dim[:]
        return semantic_mutation(proto, rng)
    return proto


NUMPY_TYPES = {TensorProto.FLOAT: np.float32, TensorProto.DOUBLE: np.float64, TensorProto.INT64: np.int64,
               TensorProto.INT32: np.int32, TensorProto.INT8: np.int8, TensorProto.UINT8: np.uint8, TensorProto.BOOL: np.bool_}


def zero_inputs(data, directory, stem):
    """--input arguments feeding zeros of each declared graph input's shape (dynamic and odd
    dimensions as 1), so the model also runs once, as the server's warm-up does; none when
    the bytes do not parse or a shape is too large to write."""
    try:
        proto = onnx.ModelProto.FromString(data)
    except Exception:  # noqa: BLE001 - any parse failure: load only
        return []
    initializers = {tensor.name for tensor in proto.graph.initializer}
    arguments = []
    for index, value in enumerate(proto.graph.input):
        if value.name in initializers or not value.name:
            continue
        tensor_type = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") and 0 <= d.dim_value <= 64 else 1 for d in tensor_type.shape.dim]
        dtype = NUMPY_TYPES.get(tensor_type.elem_type, np.float32)
        if not isinstance(value.name, str) or "=" in value.name or np.prod(dims, dtype=np.int64) > 1 << 16:
            return []
        path = directory / f"{stem}-in{index}.npy"
        np.save(path, np.zeros(dims, dtype=dtype))
        arguments += ["--input", f"{value.name}={path}"]
    return arguments


def onnx_cases(rng):
    """(label, bytes) ONNX cases, deterministic."""
    seeds = onnx_seeds()
    names = sorted(seeds)
    for name in names:
        yield f"seed:{name}", seeds[name].SerializeToString()
    while True:
        name = rng.choice(names)
        kind = rng.random()
        if kind < 0.45:
            proto = seeds[name]
            for _ in range(rng.randrange(1, 3)):
                try:
                    proto = semantic_mutation(proto, rng)
                except (ValueError, TypeError, IndexError):
                    pass  # an edit the onnx API refuses on an already-edited model: the next one
            yield f"semantic:{name}", proto.SerializeToString()
        elif kind < 0.85:
            data = seeds[name].SerializeToString()
            for _ in range(rng.randrange(1, 4)):
                data = wire_mutation(data, rng)
            yield f"wire:{name}", data
        else:
            yield f"bytes:{name}", byte_mutation(seeds[name].SerializeToString(), rng)


# --------------------------------------------------------------------------- SavedModel cases

def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def masked(crc):
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def read_table(data):
    """[(key, value)] of a leveldb table (TensorFlow's checkpoint index), no compression."""
    footer = data[-48:]
    position = 0
    handles = []
    for _ in range(4):
        value, position = read_varint(footer, position)
        handles.append(value)
    index_offset, index_size = handles[2], handles[3]

    def block_entries(offset, size):
        block = data[offset:offset + size]
        restarts = struct.unpack("<I", block[-4:])[0]
        end = len(block) - 4 - 4 * restarts
        entries, key, position = [], b"", 0
        while position < end:
            shared, position = read_varint(block, position)
            unshared, position = read_varint(block, position)
            length, position = read_varint(block, position)
            key = key[:shared] + block[position:position + unshared]
            position += unshared
            entries.append((key, block[position:position + length]))
            position += length
        return entries

    result = []
    for _, handle in block_entries(index_offset, index_size):
        offset, position = read_varint(handle, 0)
        size, _ = read_varint(handle, position)
        result += block_entries(offset, size)
    return result


def write_table(entries):
    """A leveldb table of `entries` (sorted by key): one data block, valid checksums."""
    def block(items):
        body = bytearray()
        for key, value in items:
            body += varint(0) + varint(len(key)) + varint(len(value)) + key + value
        body += struct.pack("<I", 0) + struct.pack("<I", 1)  # one restart point at 0
        return bytes(body)

    def with_trailer(contents):
        return contents + b"\0" + struct.pack("<I", masked(crc32c(contents + b"\0")))

    out = bytearray()
    data_block = block(entries)
    data_handle = varint(0) + varint(len(data_block))
    out += with_trailer(data_block)
    meta_block = block([])
    meta_handle = varint(len(out)) + varint(len(meta_block))
    out += with_trailer(meta_block)
    last_key = entries[-1][0] if entries else b""
    index_block = block([(last_key + b"\xff", data_handle)])
    index_handle = varint(len(out)) + varint(len(index_block))
    out += with_trailer(index_block)
    footer = meta_handle + index_handle
    footer += b"\0" * (40 - len(footer)) + struct.pack("<Q", 0xDB4775248B80FB57)
    return bytes(out + footer)


def index_mutation(index_bytes, rng):
    """variables.index rewritten as a valid table whose entries (BundleEntryProto: dtype 1,
    shape 2, shard_id 3, offset 4, size 5, crc32c 6, slices 7) or header are damaged."""
    entries = read_table(index_bytes)
    position = rng.randrange(len(entries))
    key, value = entries[position]
    choice = rng.random()
    if choice < 0.55:
        fields = parse(value)
        numbers = [1, 3, 4, 5] if key else [1, 2, 3]  # header: num_shards 1, endianness 2, version 3
        number = rng.choice(numbers)
        fields = [entry for entry in fields if entry[0] != number] + [[number, 0, rng.choice(EXTREMES) & ((1 << 64) - 1)]]
        value = serialize(fields)
    elif choice < 0.75:
        # A shape with huge, zero or many dimensions (TensorShapeProto: dim 2 { size 1 }).
        dims = b"".join(varint(2 << 3 | 2) + varint(len(d)) + d for d in
                        (varint(1 << 3 | 0) + varint(rng.choice(EXTREMES) & ((1 << 64) - 1))
                         for _ in range(rng.randrange(0, 5))))
        fields = [entry for entry in parse(value) if entry[0] != 2] + [[2, 2, dims]]
        value = serialize(fields)
    elif choice < 0.85:
        value = wire_mutation(value, rng)
    elif choice < 0.93:
        entries.insert(position, (key, value))  # a repeated key
        return write_table(entries)
    else:
        return byte_mutation(index_bytes, rng)  # the table itself damaged (checksums fail)
    entries[position] = (key, value)
    return write_table(entries)


def savedmodel_cases(rng, workdir):
    """(label, directory, model-run arguments) SavedModel cases: a copy of a fixture export
    with one file edited; the Keras one also runs once on zeros (its input_1 is [N, 6, 6, 3])."""
    exports = sorted(p / "export" for p in SAVEDMODELS.iterdir() if (p / "export" / "saved_model.pb").is_file())
    assert exports, f"no SavedModel fixtures under {SAVEDMODELS}"
    zeros = workdir / "keras-input.npy"
    np.save(zeros, np.zeros([1, 6, 6, 3], np.float32))

    def arguments(export):
        return ["--input", f"input_1={zeros}"] if export.parent.name == "keras" else []

    counter = 0
    for export in exports:
        # Each pristine export loads (or is refused with a message) first.
        yield f"seed:{export.parent.name}", export, arguments(export)
    while True:
        export = rng.choice(exports)
        counter += 1
        target = workdir / f"sm-{counter}"
        shutil.copytree(export, target)
        index = target / "variables" / "variables.index"
        choice = rng.random()
        if choice < 0.35 or not index.exists():
            pb = target / "saved_model.pb"
            data = pb.read_bytes()
            for _ in range(rng.randrange(1, 4)):
                data = wire_mutation(data, rng)
            pb.write_bytes(data)
            label = "pb-wire"
        elif choice < 0.8:
            index.write_bytes(index_mutation(index.read_bytes(), rng))
            label = "index"
        else:
            shards = sorted((target / "variables").glob("variables.data-*"))
            shard = rng.choice(shards)
            data = shard.read_bytes()
            shard.write_bytes(data[:rng.randrange(len(data) + 1)] if rng.random() < 0.5 else byte_mutation(data, rng))
            label = "shard"
        yield f"{label}:{export.parent.name}", target, arguments(export)


# --------------------------------------------------------------------------- the tests

def run_cases(model_run, cases, budget, describe):
    """Runs (label, path, model-run arguments) cases on two workers until the budget is
    spent; returns (count, findings)."""
    deadline = time.monotonic() + budget
    findings, count = [], 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        pending = {}
        iterator = iter(cases)
        while True:
            while len(pending) < 4 and time.monotonic() < deadline:
                label, path, arguments = next(iterator)
                pending[pool.submit(run_model, model_run, path, arguments)] = (label, path)
            if not pending:
                break
            done, _ = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                label, path = pending.pop(future)
                finding, code, tail = future.result()
                count += 1
                if finding:
                    findings.append(f"{label}: {describe(path)}: {finding}\n{tail}")
    return count, findings


def test_known_crashers_are_load_errors(model_run, tmp_path):
    """Every input that once crashed model loading or its first run (Tests/Fixtures/
    load_crashers) now fails with a message, or loads and runs on zeros."""
    files = sorted(p for p in CRASHERS.iterdir() if p.is_file() and p.suffix == ".onnx")
    assert files, f"no regression inputs in {CRASHERS}"
    findings = []
    for path in files:
        finding, code, tail = run_model(model_run, path, zero_inputs(path.read_bytes(), tmp_path, path.stem))
        if finding:
            findings.append(f"{path.name}: {finding}\n{tail}")
    assert not findings, "\n\n".join(findings)


def test_issue_rank0_models_name_the_problem(model_run, tmp_path):
    """The issue's two models: a load error naming the node, its operator and the scalar."""
    seeds = onnx_seeds()
    for name, op in (("split_rank0", "Split"), ("concat_rank0", "Concat")):
        path = tmp_path / f"{name}.onnx"
        path.write_bytes(seeds[name].SerializeToString())
        finding, code, tail = run_model(model_run, path)
        assert finding is None, f"{name}: {finding}\n{tail}"
        assert code == 2 and f"({op})" in tail and "scalar" in tail, f"{name}: exit {code}: {tail}"


def test_mutated_onnx_models_never_crash(model_run, tmp_path):
    rng = random.Random(SEED)
    counter = [0]

    def cases():
        for label, data in onnx_cases(rng):
            counter[0] += 1
            path = tmp_path / f"case-{counter[0]}.onnx"
            path.write_bytes(data)
            yield label, path, zero_inputs(data, tmp_path, f"case-{counter[0]}")

    count, findings = run_cases(model_run, cases(), BUDGET * 0.6, lambda path: str(path))
    print(f"{count} ONNX cases")
    assert count >= 50, f"only {count} ONNX cases ran within the budget"
    assert not findings, f"{len(findings)} of {count} mutated ONNX models stopped model-run:\n\n" + "\n\n".join(findings[:10])


def test_mutated_savedmodels_never_crash(model_run, tmp_path):
    rng = random.Random(SEED + 1)
    count, findings = run_cases(model_run, savedmodel_cases(rng, tmp_path), BUDGET * 0.4, lambda path: str(path))
    print(f"{count} SavedModel cases")
    assert count >= 20, f"only {count} SavedModel cases ran within the budget"
    assert not findings, f"{len(findings)} of {count} mutated SavedModels stopped model-run:\n\n" + "\n\n".join(findings[:10])
