"""model-run's SavedModel command line implemented with TensorFlow itself: a check on the
tests, not a tool. Running Tests/PythonTests/test_savedmodel_run.py with MODEL_RUN pointing at
this script (through a wrapper running venv-tf2's python) shows what a correct implementation
passes; the tests that must fail with it are those where TensorFlow itself is more lenient
than the native loader must be (it runs ops the server refuses) or words its errors otherwise.

    tf_model_run.py EXPORT_DIR [--signature NAME] --input NAME=FILE ... --output OUTDIR
                    [--fetch TENSOR_NAME ...]

A FILE ending in .npy is an array (several for one NAME are concatenated on axis 0); any other
FILE is one DT_STRING element (its raw bytes; several make a batch, in order). Writes
OUTDIR/<output alias>.npy for every output of the signature (strings as numpy 'S' arrays) and
OUTDIR/<TENSOR_NAME with '/' and ':' replaced by '_'>.npy per --fetch (TF1 graphs only).
"""
import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402


def as_output(value):
    value = np.asarray(value)
    if value.dtype == object:
        return np.array(value.tolist(), dtype=np.bytes_).reshape(value.shape)
    return value


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("export_dir")
    parser.add_argument("--signature", default="serving_default")
    parser.add_argument("--input", action="append", default=[])
    parser.add_argument("--output", required=True)
    parser.add_argument("--fetch", action="append", default=[])
    args = parser.parse_args()

    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    feeds = {}
    for item in args.input:
        name, _, path = item.partition("=")
        if path.endswith(".npy"):
            feeds.setdefault(name, []).append(np.load(path))
        else:
            with open(path, "rb") as f:
                feeds.setdefault(name, []).append(f.read())
    feeds = {k: np.concatenate(v) if isinstance(v[0], np.ndarray) else np.array(v, dtype=object)
             for k, v in feeds.items()}

    model = saved_model_pb2.SavedModel()
    with open(os.path.join(args.export_dir, "saved_model.pb"), "rb") as f:
        model.ParseFromString(f.read())
    [meta] = [m for m in model.meta_graphs if list(m.meta_info_def.tags) == ["serve"]]
    os.makedirs(args.output, exist_ok=True)
    if not meta.object_graph_def.nodes:  # TF1: graph + session, the tensors by name
        v1 = tf.compat.v1
        with tf.Graph().as_default() as graph, v1.Session(graph=graph) as session:
            loaded = v1.saved_model.loader.load(session, ["serve"], args.export_dir)
            signature = loaded.signature_def[args.signature]
            fetches = {k: v.name for k, v in signature.outputs.items()}
            fetches.update({t: t for t in args.fetch})
            missing = set(signature.inputs) - set(feeds)
            if missing or set(feeds) - set(signature.inputs):
                raise SystemExit(f"inputs {sorted(feeds)} do not match signature inputs {sorted(signature.inputs)}")
            results = session.run(fetches, {signature.inputs[k].name: v for k, v in feeds.items()})
    else:
        if args.fetch:
            raise SystemExit("--fetch: TF2 functions' inner tensors cannot be fetched here")
        loaded = tf.saved_model.load(args.export_dir)
        function = loaded.signatures[args.signature]
        results = {k: v.numpy() for k, v in function(**{k: tf.constant(v) for k, v in feeds.items()}).items()}
    for key, value in results.items():
        np.save(os.path.join(args.output, key.replace("/", "_").replace(":", "_") + ".npy"), as_output(value))
    return 0


if __name__ == "__main__":
    sys.exit(main())
