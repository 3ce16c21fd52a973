"""Build randomly initialised Keras CNNs, export them to ONNX and record
onnxruntime reference outputs for the engine's correctness tests.

Run with the venv-tf interpreter (see scripts/python-env.sh):

    $VENV_TF/bin/python Tests/Fixtures/make_keras_models.py [--force] [NAME ...]

For each model writes <cache>/models/<name>/:
    model.onnx                  float32, NHWC input, dynamic batch dimension
    input_b1.npy  output_b1.npy batch 1 (input uniform in [-1, 1]; [0, 255] for EfficientNet)
    input_b4.npy  output_b4.npy batch 4; input_b4[0] == input_b1[0]
    meta.json                   names, shapes, opset, op census, stats, stamp
meta.json is written last and doubles as the completion marker: a model is
skipped when it exists with the current stamp (use --force to rebuild).
"""

import argparse
import collections
import hashlib
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

# Bump when anything that changes the generated files changes.
GENERATOR_VERSION = 1
SEED = 1234
OPSET = 13

# name -> (keras.applications constructor, input side)
MODELS = {
    "inception_v3": ("InceptionV3", 299),
    "resnet50": ("ResNet50", 224),
    "mobilenet_v2": ("MobileNetV2", 224),
    "efficientnet_b0": ("EfficientNetB0", 224),
}

# Input value range per model (default [-1, 1]). EfficientNet rescales its input by 1/255
# itself (pixels in [0, 255]); fed [-1, 1] its stem activations are ~1e-3, below BatchNorm's
# epsilon, and the perturbed statistics then blow the logits up.
INPUT_RANGES = {"efficientnet_b0": (0.0, 255.0)}

# Sanity thresholds for the reference logits.
MIN_LOGIT_STD = 0.05
MAX_ABS_LOGIT = 1e4


def cache_dir():
    return os.environ.get("MODEL_SERVER_CACHE") or os.path.expanduser(
        "~/.cache/swift-model-server"
    )


def stamp():
    import onnx
    import onnxruntime
    import tensorflow as tf
    import tf2onnx

    return {
        "generator_version": GENERATOR_VERSION,
        "seed": SEED,
        "opset": OPSET,
        "tensorflow": tf.__version__,
        "tf2onnx": tf2onnx.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def model_seed(name):
    # Stable per-model seed, independent of which models are built in a run.
    return SEED + int(hashlib.sha256(name.encode()).hexdigest()[:6], 16)


def input_range(name):
    return INPUT_RANGES.get(name, (-1.0, 1.0))


def make_inputs(name, side):
    rng = np.random.default_rng(model_seed(name) + 1)
    b4 = rng.uniform(*input_range(name), size=(4, side, side, 3)).astype(np.float32)
    return b4[:1].copy(), b4


def build_keras(name, ctor, side):
    """Random weights + randomised BatchNormalization parameters.

    Glorot-initialised deep nets with identity BN statistics let activations
    shrink or blow up layer by layer, giving near-constant logits. So BN moving
    statistics are first calibrated on a separate random batch (one training-
    mode pass with momentum 0 stores each layer's batch mean/variance), then
    perturbed; gamma/beta are drawn at random. Activations stay O(1) while every
    BN layer still does a non-trivial affine transform.
    """
    import tensorflow as tf

    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(model_seed(name))  # python, numpy and TF seeds
    model = getattr(tf.keras.applications, ctor)(
        weights=None, input_shape=(side, side, 3), classifier_activation=None
    )
    rng = np.random.default_rng(model_seed(name) + 2)
    bns = [l for l in model.layers if isinstance(l, tf.keras.layers.BatchNormalization)]

    def param(layer, kind):
        return next((w for w in layer.weights if w.name.split("/")[-1].startswith(kind)), None)

    # 1. Keras zero-initialises biases and tf2onnx then drops the "+ 0" nodes;
    #    random biases keep the classifier's bias Add and conv biases live.
    for layer in model.layers:
        if isinstance(layer, (tf.keras.layers.Conv2D, tf.keras.layers.Dense)) and layer.use_bias:
            sd = 0.5 if isinstance(layer, tf.keras.layers.Dense) else 0.1
            layer.bias.assign(rng.normal(0.0, sd, layer.bias.shape).astype(np.float32))

    # 2. Random gamma (when the layer has a scale) and beta.
    for bn in bns:
        gamma, beta = param(bn, "gamma"), param(bn, "beta")
        if gamma is not None:
            gamma.assign(rng.uniform(0.5, 1.5, gamma.shape).astype(np.float32))
        if beta is not None:
            beta.assign(rng.normal(0.0, 0.1, beta.shape).astype(np.float32))

    # 3. Calibrate moving statistics with one training-mode forward pass.
    calib = rng.uniform(*input_range(name), size=(8, side, side, 3)).astype(np.float32)
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.momentum = 0.0
    model(calib, training=True)
    for bn, m in zip(bns, momenta):
        bn.momentum = m

    # 4. Perturb them: mean shift N(0, 0.1) stddevs, variance scale U(0.75, 1.25).
    for bn in bns:
        mean, var = param(bn, "moving_mean"), param(bn, "moving_variance")
        v = var.numpy()
        std = np.sqrt(v + bn.epsilon)
        mean.assign((mean.numpy() + rng.normal(0.0, 0.1, v.shape) * std).astype(np.float32))
        var.assign((v * rng.uniform(0.75, 1.25, v.shape)).astype(np.float32))
    return model, len(bns)


def export_onnx(model, side, path):
    import tensorflow as tf
    import tf2onnx

    spec = (tf.TensorSpec((None, side, side, 3), tf.float32, name="input"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=OPSET)
    # tf2onnx names the symbolic batch dims "unk__N"; call them all "batch".
    batch_syms = {vi.type.tensor_type.shape.dim[0].dim_param
                  for vi in list(proto.graph.input) + list(proto.graph.output)}
    for vi in list(proto.graph.input) + list(proto.graph.output) + list(proto.graph.value_info):
        for d in vi.type.tensor_type.shape.dim:
            if d.dim_param in batch_syms:
                d.dim_param = "batch"
    # Equal small constants are merged under an arbitrary one of their names;
    # rename them in first-use order and sort the initializers so the file is
    # byte-for-byte reproducible.
    small = {i.name: i for i in proto.graph.initializer if np.prod(i.dims) <= 16}
    renamed = {}
    for node in proto.graph.node:
        for k, name in enumerate(node.input):
            if name in small:
                renamed.setdefault(name, f"const_{len(renamed)}")
                node.input[k] = renamed[name]
    for name, new in renamed.items():
        small[name].name = new
    inits = sorted(proto.graph.initializer, key=lambda i: i.name)
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(inits)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(proto.SerializeToString())
    os.replace(tmp, path)


def describe(path):
    """Opset, input/output names and shapes, and op-type census of an ONNX file."""
    import onnx

    m = onnx.load(path)

    def shape(vi):
        return [d.dim_param or d.dim_value or "?" for d in vi.type.tensor_type.shape.dim]

    inits = {i.name for i in m.graph.initializer}
    ops = collections.Counter(n.op_type for n in m.graph.node)
    # Distinct attribute values per op type (plus input arity).
    attrs = collections.defaultdict(lambda: collections.defaultdict(set))
    for n in m.graph.node:
        attrs[n.op_type]["num_inputs"].add(len(n.input))
        for a in n.attribute:
            v = onnx.helper.get_attribute_value(a)
            attrs[n.op_type][a.name].add(v.decode() if isinstance(v, bytes) else
                                         tuple(v) if isinstance(v, list) else v)
    return {
        "opset": {o.domain or "ai.onnx": o.version for o in m.opset_import},
        "ir_version": m.ir_version,
        "inputs": [{"name": i.name, "shape": shape(i)} for i in m.graph.input if i.name not in inits],
        "outputs": [{"name": o.name, "shape": shape(o)} for o in m.graph.output],
        "op_types": dict(sorted(ops.items())),
        "op_attributes": {op: {k: sorted(v, key=str) for k, v in sorted(d.items())}
                          for op, d in sorted(attrs.items())},
        "node_count": len(m.graph.node),
        "initializer_count": len(inits),
    }


def stats(a):
    return {
        "shape": list(a.shape),
        "mean": float(a.mean()),
        "std": float(a.std()),
        "min": float(a.min()),
        "max": float(a.max()),
        "per_sample_std_min": float(a.reshape(a.shape[0], -1).std(axis=1).min()),
    }


def check_logits(tag, a):
    s = stats(a)
    print(f"  {tag}: shape={s['shape']} mean={s['mean']:.4f} std={s['std']:.4f} "
          f"min={s['min']:.4f} max={s['max']:.4f}")
    if not np.all(np.isfinite(a)):
        raise SystemExit(f"{tag}: non-finite values in logits")
    if s["per_sample_std_min"] < MIN_LOGIT_STD:
        raise SystemExit(f"{tag}: degenerate logits (per-sample std {s['per_sample_std_min']:.3g})")
    if np.abs(a).max() > MAX_ABS_LOGIT:
        raise SystemExit(f"{tag}: logits too large ({np.abs(a).max():.3g})")
    return s


def generate(name, ctor, side, out, stamp_info):
    import onnxruntime as ort

    t0 = time.time()
    model, n_bn = build_keras(name, ctor, side)
    print(f"  built {ctor}: {model.count_params():,} params, {n_bn} BatchNormalization layers")
    model_path = os.path.join(out, "model.onnx")
    export_onnx(model, side, model_path)
    info = describe(model_path)
    t_export = time.time() - t0

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = os.cpu_count() or 1
    sess = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
    in_name, out_name = sess.get_inputs()[0].name, sess.get_outputs()[0].name

    x1, x4 = make_inputs(name, side)
    meta = {"model": ctor, "stamp": stamp_info, **info, "data": {}}
    outs = {}
    for tag, x in (("b1", x1), ("b4", x4)):
        y = sess.run([out_name], {in_name: x})[0]
        outs[tag] = y
        s = check_logits(tag, y)
        # Keras vs ORT gap: a rough guide for the engine's tolerances.
        k = model(x, training=False).numpy()
        s["max_abs_diff_vs_keras"] = float(np.abs(k - y).max())
        meta["data"][tag] = {"input": f"input_{tag}.npy", "output": f"output_{tag}.npy",
                             "input_range": list(input_range(name)), "output_stats": s}
        np.save(os.path.join(out, f"input_{tag}.npy"), x)
        np.save(os.path.join(out, f"output_{tag}.npy"), y)
        print(f"  {tag}: max |keras - onnxruntime| = {s['max_abs_diff_vs_keras']:.3g}")

    # How much the logits differ between images (random nets on noise inputs
    # share a large input-independent component).
    meta["batch_diversity"] = {"mean_std_across_batch": float(outs["b4"].std(axis=0).mean()),
                               "max_corr_between_samples": float(
                                   np.corrcoef(outs["b4"])[np.triu_indices(4, 1)].max())}
    # Row 0 of both batches is the same image: the result must not depend on batching.
    meta["batch_consistency_max_abs_diff"] = float(np.abs(outs["b1"][0] - outs["b4"][0]).max())
    print(f"  max |output_b1[0] - output_b4[0]| = {meta['batch_consistency_max_abs_diff']:.3g}")
    meta["model_bytes"] = os.path.getsize(model_path)
    with open(model_path, "rb") as f:
        meta["model_sha256"] = hashlib.sha256(f.read()).hexdigest()
    meta["seconds"] = {"build_and_export": round(t_export, 1),
                       "total": round(time.time() - t0, 1)}
    tmp = os.path.join(out, "meta.json.tmp")
    with open(tmp, "w") as f:
        json.dump(meta, f, indent=2)
    os.replace(tmp, os.path.join(out, "meta.json"))
    return meta


def print_summary(meta):
    print(f"  opset={meta['opset']} nodes={meta['node_count']} "
          f"size={meta['model_bytes'] / 1e6:.1f} MB")
    for io in ("inputs", "outputs"):
        for t in meta[io]:
            print(f"  {io[:-1]}: {t['name']} {t['shape']}")
    print("  ops: " + ", ".join(f"{k}={v}" for k, v in meta["op_types"].items()))
    for op, d in meta["op_attributes"].items():
        print(f"    {op}: " + "; ".join(f"{k}={v}" for k, v in d.items()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("names", nargs="*", metavar="NAME",
                    help=f"models to build (default: all of {', '.join(MODELS)})")
    ap.add_argument("--force", action="store_true", help="rebuild even if up to date")
    args = ap.parse_args()
    unknown = sorted(set(args.names) - set(MODELS))
    if unknown:
        ap.error(f"unknown model(s): {', '.join(unknown)}")

    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    stamp_info = stamp()
    root = os.path.join(cache_dir(), "models")
    for name in args.names or MODELS:
        ctor, side = MODELS[name]
        out = os.path.join(root, name)
        meta_path = os.path.join(out, "meta.json")
        files = ["model.onnx", "meta.json"] + [f"{p}_{b}.npy" for p in ("input", "output") for b in ("b1", "b4")]
        print(f"{name}: {out}")
        if not args.force and all(os.path.exists(os.path.join(out, f)) for f in files):
            with open(meta_path) as f:
                meta = json.load(f)
            if meta.get("stamp") == stamp_info:
                print("  up to date")
                print_summary(meta)
                continue
        os.makedirs(out, exist_ok=True)
        if os.path.exists(meta_path):
            os.remove(meta_path)  # invalidate until regeneration completes
        meta = generate(name, ctor, side, out, stamp_info)
        print_summary(meta)
        print(f"  done in {meta['seconds']['total']}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
