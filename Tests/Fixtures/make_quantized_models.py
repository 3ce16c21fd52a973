"""Quantize the Keras ONNX exports with onnxruntime's quantization tool and record
onnxruntime's answers, for the engine's INT8 tests and benchmarks.

Run with the test venv (onnxruntime, Pillow), after make_keras_models.py:

    $VENV_TEST/bin/python Tests/Fixtures/make_quantized_models.py [--force] [NAME ...]

For each network in NETWORKS (read from <cache>/models/<network>/model.onnx) the float model
goes once through onnxruntime's quant_pre_process (symbolic shape inference + graph
optimisation, as onnxruntime's quantization docs advise), then through quantize_static,
calibrated (MinMax) on CALIBRATION crops of real photographs (the JPEGs of Debian's
wallpaper packages, <cache>/savedmodels/photos, fetched by make_savedmodels.py), once per variant:

    <cache>/quantized/<network>_<format>_<granularity>/
        model.onnx                 QDQ or QOperator (QLinearConv ...), u8 activations, s8
                                   weights, per-channel or per-tensor weight scales
        input_b1.npy input_b4.npy  float32 NHWC crops of other photos (not the calibration ones)
        output_b1.npy output_b4.npy onnxruntime's outputs (CPU provider, 1 thread, all
                                   graph optimisations: its own integer kernels)
        meta.json                  op census, stamp; written last = completion marker

A variant is skipped when its meta.json has the current stamp. Time (2 cores): about 20 s
per variant, 12 variants, ~4 min cold; seconds when cached.
"""

import argparse
import collections
import glob
import json
import os
import sys
import time

import numpy as np

GENERATOR_VERSION = 2
NETWORKS = {"inception_v3": 299, "resnet50": 224, "mobilenet_v2": 224}
VARIANTS = [(fmt, granularity) for fmt in ("qdq", "qop") for granularity in ("per_channel", "per_tensor")]
CALIBRATION = 16


def cache_dir():
    return os.environ.get("MODEL_SERVER_CACHE") or os.path.expanduser("~/.cache/swift-model-server")


def stamp():
    import onnx
    import onnxruntime
    import PIL

    return {"generator_version": GENERATOR_VERSION, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "pillow": PIL.__version__, "calibration": CALIBRATION}


def photos():
    # make_savedmodels.py (run before this in scripts/test.sh) keeps its photos in
    # savedmodels/photos; test_image_tensorflow.py its own in jpeg-photos.
    paths = []
    for directory in ("savedmodels/photos", "jpeg-photos"):
        paths = sorted(glob.glob(os.path.join(cache_dir(), directory, "**", "*.jpg"), recursive=True))
        if len(paths) >= 4:
            break
    if len(paths) < 4:
        sys.exit("make_quantized_models: no photos in <cache>/savedmodels/photos or <cache>/jpeg-photos "
                 "(run make_savedmodels.py first: it fetches Debian's wallpaper photos)")
    return paths


def crop(path, side, index):
    """A crop of a photo, resized to side x side, as float32 HWC in [-1, 1] (the Keras
    'tf' preprocessing). `index` picks the crop: position, scale and horizontal flip vary."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        width, height = image.size
        rng = np.random.default_rng(index)
        fraction = rng.uniform(0.35, 1.0)
        size = int(min(width, height) * fraction)
        left = int(rng.uniform(0, width - size + 1))
        top = int(rng.uniform(0, height - size + 1))
        image = image.crop((left, top, left + size, top + size)).resize((side, side), Image.BILINEAR)
        if rng.uniform() < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        return np.asarray(image, dtype=np.float32) / 127.5 - 1.0


def crops(side, count, first):
    paths = photos()
    return np.stack([crop(paths[(first + i) % len(paths)], side, first + i) for i in range(count)])


class Reader:
    """onnxruntime CalibrationDataReader over crops, one image per batch."""

    def __init__(self, input_name, images):
        self.items = iter([{input_name: images[i:i + 1]} for i in range(len(images))])

    def get_next(self):
        return next(self.items, None)


def census(path):
    import onnx

    model = onnx.load(path)
    return dict(sorted(collections.Counter(
        (n.domain + "." if n.domain else "") + n.op_type for n in model.graph.node).items()))


def run_ort(path, x):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def make(network, side, force):
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source = os.path.join(cache_dir(), "models", network, "model.onnx")
    if not os.path.exists(source):
        sys.exit(f"make_quantized_models: {source} is missing (run make_keras_models.py first)")
    root = os.path.join(cache_dir(), "quantized")
    os.makedirs(root, exist_ok=True)
    current = stamp()
    todo = []
    for fmt, granularity in VARIANTS:
        directory = os.path.join(root, f"{network}_{fmt}_{granularity}")
        meta = os.path.join(directory, "meta.json")
        if not force and os.path.exists(meta):
            with open(meta) as f:
                if json.load(f).get("stamp") == current:
                    continue
        todo.append((fmt, granularity, directory))
    if not todo:
        print(f"{network}: cached", file=sys.stderr)
        return
    prepared = os.path.join(root, f"{network}_preprocessed.onnx")
    start = time.time()
    quant_pre_process(source, prepared, skip_symbolic_shape=False)
    calibration = crops(side, CALIBRATION, 0).astype(np.float32)
    # Test inputs: other photos' crops (index offset), b4[0] == b1[0].
    b4 = crops(side, 4, 1000).astype(np.float32)
    b1 = b4[:1].copy()
    import onnx

    input_name = onnx.load(prepared).graph.input[0].name
    for fmt, granularity, directory in todo:
        os.makedirs(directory, exist_ok=True)
        for stale in ("meta.json",):
            if os.path.exists(os.path.join(directory, stale)):
                os.remove(os.path.join(directory, stale))
        model_path = os.path.join(directory, "model.onnx")
        quantize_static(prepared, model_path + ".tmp", Reader(input_name, calibration),
                        quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
                        per_channel=granularity == "per_channel",
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        os.replace(model_path + ".tmp", model_path)
        np.save(os.path.join(directory, "input_b1.npy"), b1)
        np.save(os.path.join(directory, "input_b4.npy"), b4)
        np.save(os.path.join(directory, "output_b1.npy"), run_ort(model_path, b1))
        np.save(os.path.join(directory, "output_b4.npy"), run_ort(model_path, b4))
        meta = {"network": network, "format": fmt, "granularity": granularity, "side": side,
                "op_types": census(model_path), "stamp": current}
        with open(os.path.join(directory, "meta.json.tmp"), "w") as f:
            json.dump(meta, f, indent=1)
        os.replace(os.path.join(directory, "meta.json.tmp"), os.path.join(directory, "meta.json"))
        print(f"{network} {fmt} {granularity}: {time.time() - start:.0f} s, {meta['op_types']}", file=sys.stderr)
    os.remove(prepared)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--force", action="store_true")
    parser.add_argument("names", nargs="*", choices=[[]] + list(NETWORKS), default=[])
    args = parser.parse_args()
    for network in args.names or NETWORKS:
        make(network, NETWORKS[network], args.force)


if __name__ == "__main__":
    main()
