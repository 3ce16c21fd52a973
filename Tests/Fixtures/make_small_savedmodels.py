"""Write the small TensorFlow SavedModels the engine's SavedModel reader tests read.

Run with the venv-tf interpreter (TensorFlow 2.15, see scripts/python-env.sh):

    eval "$(scripts/python-env.sh tf)"
    $VENV_TF/bin/python Tests/Fixtures/make_small_savedmodels.py

Writes Tests/Fixtures/savedmodels/<name>/ (committed, a few tens of KB in all) with
    export/                 the SavedModel as TensorFlow wrote it
    written/NNN.npy         the values the generator assigned to the variables
    checkpoint/NNN.npy      every numeric bundle entry as tf.train.load_checkpoint reads it
    manifest.json           what the Swift tests expect (see `manifest` below)

Exports:
    tf1_graph  tf.compat.v1 graph mode, SavedModelBuilder: VariableV2 variables of float32,
               float64, int32, int64, int8, uint8, bool and string, one resource variable
               (VarHandleOp), placed on two CPU devices so the sharded Saver writes two data
               shards; a hash table initialised by an op in the `legacy_init_op` collection.
    tf2_module a tf.Module: variables, a captured eager constant, an asset vocabulary and
               a StaticHashTable built from it; signature serving_default.
    keras      a small tf.keras model (Conv2D + ReLU, BatchNormalization, pooling, Dense) saved with
               tf.saved_model.save.
"""

import base64
import json
import os
import shutil
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.core.protobuf import saved_model_pb2  # noqa: E402

tf1 = tf.compat.v1
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "savedmodels")
SEED = 20261207


def dtype_name(dtype):
    return tf.as_dtype(dtype).name  # float32, float64, int32, int64, int8, uint8, bool, string


class Recorder:
    """Collects npy files and the manifest of one export."""

    def __init__(self, name):
        self.dir = os.path.join(OUT, name)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.export = os.path.join(self.dir, "export")
        self.manifest = {"written": [], "checkpoint": {}}
        self.counter = 0

    def npy(self, folder, value):
        os.makedirs(os.path.join(self.dir, folder), exist_ok=True)
        path = f"{folder}/{self.counter:03d}.npy"
        self.counter += 1
        np.save(os.path.join(self.dir, path), np.array(value, order="C"))  # keeps 0-d arrays 0-d
        return path

    def value_record(self, folder, value):
        if isinstance(value, bytes):  # a scalar string (numpy's "S" arrays drop trailing NULs)
            return {"dtype": "string", "shape": [], "b64": [base64.b64encode(value).decode()]}
        value = np.asarray(value)
        if value.dtype.kind in "SOU":
            flat = [bytes(v) if not isinstance(v, str) else v.encode() for v in value.reshape(-1).tolist()]
            return {"dtype": "string", "shape": list(value.shape),
                    "b64": [base64.b64encode(v).decode() for v in flat]}
        return {"dtype": dtype_name(value.dtype), "shape": list(value.shape), "npy": self.npy(folder, value)}

    def written(self, key, value, **extra):
        record = self.value_record("written", value)
        record["key"] = key
        record.update(extra)
        self.manifest["written"].append(record)

    def read_checkpoint(self):
        reader = tf.train.load_checkpoint(os.path.join(self.export, "variables", "variables"))
        dtypes = reader.get_variable_to_dtype_map()
        for key in sorted(dtypes):
            self.manifest["checkpoint"][key] = self.value_record("checkpoint", reader.get_tensor(key))

    def saved_model(self):
        proto = saved_model_pb2.SavedModel()
        with open(os.path.join(self.export, "saved_model.pb"), "rb") as f:
            proto.ParseFromString(f.read())
        return proto

    def finish(self):
        self.read_checkpoint()
        with open(os.path.join(self.dir, "manifest.json"), "w") as f:
            json.dump(self.manifest, f, indent=1, sort_keys=True)
            f.write("\n")


def make_tf1():
    rec = Recorder("tf1_graph")
    rng = np.random.default_rng(SEED)
    values = {
        "dense/kernel": rng.normal(size=(3, 2)).astype(np.float32),
        "dense/bias": np.array([0.5, -0.25], np.float32),
        "stats/mean64": rng.normal(size=(2, 2)).astype(np.float64),
        "counts/i32": np.array([1, -2, 2147483647], np.int32),
        "counts/i64": np.array([[-(2**40), 5]], np.int64),
        "counts/i8": np.array([-128, 0, 127], np.int8),
        "pixels/u8": np.array([0, 17, 255], np.uint8),
        "mask": np.array([True, False, True, True]),
        "labels": np.array([b"cat", b"", b"dog" * 50]),
        "no_labels": np.array([], dtype=bytes),
        "scalar": np.float32(3.5),
        "empty": np.zeros((0, 4), np.float32),
    }
    graph = tf.Graph()
    with graph.as_default():
        x = tf1.placeholder(tf.float32, [None, 3], name="x")
        variables = {}
        for index, (name, value) in enumerate(values.items()):
            # Two devices: the sharded Saver writes one data shard per device.
            with tf.device(f"/cpu:{index % 2}"):
                variables[name] = tf1.Variable(value, name=name, use_resource=False)
        with tf.device("/cpu:1"):
            resource = tf1.Variable(rng.normal(size=(2,)).astype(np.float32), name="resource/v", use_resource=True)
        y = tf.matmul(x, variables["dense/kernel"]) + variables["dense/bias"] + resource
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant([0, 1], tf.int64), tf.constant(["no", "yes"])), "UNK")
        classes = table.lookup(tf.argmax(y, 1), name="classes")
        # What TF 1.x's builder did with legacy_init_op: a collection of that name.
        init = tf.group(tf1.tables_initializer(), name="legacy_init_op")
        tf1.add_to_collection("legacy_init_op", init)
        config = tf1.ConfigProto(device_count={"CPU": 2})
        with tf1.Session(graph=graph, config=config) as sess:
            sess.run(tf1.global_variables_initializer())
            builder = tf1.saved_model.Builder(rec.export)
            signature = tf1.saved_model.predict_signature_def({"x": x}, {"y": y, "classes": classes})
            builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map={"serving_default": signature})
            builder.save()
            resource_value = sess.run(resource)
    for name, value in values.items():
        rec.written(name, value, node=name, op="VariableV2")
    rec.written("resource/v", resource_value, node="resource/v", op="VarHandleOp")
    rec.manifest["init_op"] = "legacy_init_op"
    rec.manifest["num_shards"] = 2
    rec.finish()


class Module(tf.Module):
    def __init__(self, vocab_path, rng):
        super().__init__()
        self.w = tf.Variable(rng.normal(size=(4, 3)).astype(np.float32), name="w")
        self.b = tf.Variable(rng.normal(size=(3,)), name="b")  # float64
        self.step = tf.Variable(np.int64(7), name="step")
        self.offsets = tf.Variable(np.array([3, -4, 5], np.int32), name="offsets")
        self.vocab = tf.saved_model.Asset(vocab_path)
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(self.vocab, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
                                          tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER), -1)
        self.scale = tf.constant(np.array([1.0, 2.0, 3.0], np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None], tf.string)])
    def __call__(self, x, words):
        y = (tf.matmul(x, self.w) + tf.cast(self.b, tf.float32)) * self.scale + tf.cast(self.offsets, tf.float32)
        return {"y": y, "ids": self.table.lookup(words), "step": self.step + 0}


def capture_kinds(loaded, function):
    """What TensorFlow's runtime binds to each captured input of a loaded concrete function."""
    by_handle = {id(v.handle): v for v in tf.train.TrackableView(loaded).descendants()
                 if isinstance(v, tf.Variable)}
    kinds = []
    for tensor in function.captured_inputs:
        if id(tensor) in by_handle:
            kinds.append({"kind": "variable", "value": by_handle[id(tensor)].numpy()})
        elif tensor.dtype == tf.resource:
            kinds.append({"kind": "resource"})
        else:
            kinds.append({"kind": "tensor", "value": tensor.numpy()})
    return kinds


def signature_function_name(rec, signature):
    """The function the graph's StatefulPartitionedCall for `signature` calls."""
    meta = rec.saved_model().meta_graphs[0]
    output = next(iter(meta.signature_def[signature].outputs.values())).name.split(":")[0]
    node = next(n for n in meta.graph_def.node if n.name == output)
    return node.attr["f"].func.name


def record_captures(rec, signature):
    loaded = tf.saved_model.load(rec.export)
    name = signature_function_name(rec, signature)
    captures = []
    for kind in capture_kinds(loaded, loaded.signatures[signature]):
        entry = {"kind": kind["kind"]}
        if "value" in kind:
            entry.update(rec.value_record("captured", kind["value"]))
        captures.append(entry)
    rec.manifest["captures"] = {"function": name, "signature": signature, "inputs": captures}


def make_tf2():
    rec = Recorder("tf2_module")
    rng = np.random.default_rng(SEED + 1)
    vocab = os.path.join(rec.dir, "vocab.txt")
    with open(vocab, "w") as f:
        f.write("alpha\nbeta\ngamma\n")
    module = Module(vocab, rng)
    tf.saved_model.save(module, rec.export, signatures={"serving_default": module.__call__})
    os.remove(vocab)
    for name in ["w", "b", "step", "offsets"]:
        rec.written(name, getattr(module, name).numpy(), attribute=name)
    rec.manifest["assets"] = {"vocab.txt": "alpha\nbeta\ngamma\n"}
    rec.manifest["init_op"] = "__saved_model_init_op"
    record_captures(rec, "serving_default")
    rec.finish()


def make_keras():
    rec = Recorder("keras")
    tf.keras.utils.set_random_seed(SEED)
    model = tf.keras.Sequential([
        tf.keras.Input((6, 6, 3)),
        tf.keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
        tf.keras.layers.BatchNormalization(name="bn"),
        tf.keras.layers.GlobalAveragePooling2D(),
        tf.keras.layers.Dense(2, name="dense"),
    ])
    rng = np.random.default_rng(SEED + 2)
    bn = model.get_layer("bn")
    bn.moving_mean.assign(rng.normal(size=4).astype(np.float32))
    bn.moving_variance.assign(rng.uniform(0.5, 2, size=4).astype(np.float32))
    tf.saved_model.save(model, rec.export)
    for variable in model.variables:
        rec.written(variable.name, variable.numpy(), attribute=variable.name)
    record_captures(rec, "serving_default")
    rec.finish()


def main():
    os.makedirs(OUT, exist_ok=True)
    make_tf1()
    make_tf2()
    make_keras()
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    print(f"wrote {OUT}: {total} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
