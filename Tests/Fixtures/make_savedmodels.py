"""Build TensorFlow SavedModel fixtures and record TensorFlow's own answers for the
native SavedModel loader's end-to-end tests (issue 13).

Run with the venv-tf2 interpreter (TF >= 2.16 with Keras 3; scripts/python-env.sh tf2):

    $VENV_TF2/bin/python Tests/Fixtures/make_savedmodels.py [--force] [NAME ...]

Everything goes to ${MODEL_SERVER_CACHE:-~/.cache/swift-model-server}/savedmodels/:

  photos/            originals from Debian's wallpaper packages (apt-get download, dpkg-deb)
  jpegs/             test JPEGs of every kind made from them with Pillow (index.json lists
                     them: kind, size, subsampling, progressive, mode)
  <model>/1/         the SavedModel (a version directory, as --model_base_path wants it)
  <model>/reference/ inputs and TensorFlow's outputs (.npy), meta.json (signatures with tensor
                     names/dtypes/shapes, op census, stamp, timing, top-1 spread)

Models (see MODELS): the classic TF1 Inception export as TF Serving's inception_saved_model.py
writes it (inception_tf1: FusedBatchNormV3, table filled by InitializeTableV2; inception_tf1_bn:
decomposed batch norm, LookupTableImportV2), Keras 3 model.export() and tf.saved_model.save of
four keras.applications networks, a TF2 tf.Module taking JPEG strings with an asset vocabulary,
and broken copies for load-error tests. Weights are random (seeded); batch-norm statistics come
from real photos (calibration photos plus the test photos; variances floored) and the classifier
input is standardised, so that the outputs depend strongly on the input (top-1 spread over the
17 test photos in meta.json). Every reference is checked for conditioning: TensorFlow's own
answers for batch 1 and for the whole batch must agree within a quarter of the tests' tolerance.

Models that share a network are built by one child process (TF1 graph mode and Keras 3 eager
state must not mix between groups) into <model>.tmp, then renamed: <model>/reference/meta.json
with the current stamp (which covers this file's source) marks a complete model, skipped next
time (--force rebuilds).
"""

import argparse
import glob
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# oneDNN's reordered float sums make TF's answers vary between CPUs; the plain kernels do not.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402

# Bump when anything that changes the generated files changes.
GENERATOR_VERSION = 2
SEED = 20261207

# ------------------------------------------------------------------------------ photos and JPEGs

# Photographs in Debian 12's wallpaper packages: TEST_PHOTOS are the photos the top-1 spread and
# the JPEG kinds come from; CALIBRATION_PHOTOS only set the batch-norm statistics.
PACKAGES = {
    "plasma-workspace-wallpapers": "usr/share/wallpapers/{}/contents/images/2560x1600.jpg",
    "mate-backgrounds": "usr/share/backgrounds/mate/nature/{}.jpg",
}
TEST_PHOTOS = {
    "plasma-workspace-wallpapers": ["Autumn", "BytheWater", "ColdRipple", "ColorfulCups", "EveningGlow",
                                    "FallenLeaf", "OneStandsOut", "Path"],
    "mate-backgrounds": ["Aqua", "Blinds", "Garden", "LadyBird", "RainDrops", "Storm", "TwoWings", "Wood",
                         "YellowFlower"],
}
CALIBRATION_PHOTOS = {"mate-backgrounds": ["Dune", "FreshFlower", "GreenMeadow"],
                      "plasma-workspace-wallpapers": ["DarkestHour", "Kite", "summer_1am"]}

# JPEG kinds: name -> (photo, (width, height), Pillow mode, save options)
JPEG_KINDS = {
    "yuv420_640x480": ("Garden", (640, 480), "RGB", dict(quality=90, subsampling=2)),
    "yuv444_500x375": ("LadyBird", (500, 375), "RGB", dict(quality=95, subsampling=0)),
    "yuv422_480x320": ("Aqua", (480, 320), "RGB", dict(quality=90, subsampling=1)),
    "progressive420_800x600": ("Autumn", (800, 600), "RGB", dict(quality=88, subsampling=2, progressive=True)),
    "progressive444_333x499": ("ColorfulCups", (333, 499), "RGB", dict(quality=92, subsampling=0,
                                                                        progressive=True)),
    "grayscale_400x300": ("Storm", (400, 300), "L", dict(quality=90)),
    "cmyk_450x300": ("YellowFlower", (450, 300), "CMYK", dict(quality=90)),
    "large_4032x3024": ("Wood", (4032, 3024), "RGB", dict(quality=92, subsampling=2)),
    "odd420_301x203": ("TwoWings", (301, 203), "RGB", dict(quality=85, subsampling=2)),
    "tiny_17x11": ("RainDrops", (17, 11), "RGB", dict(quality=90, subsampling=2)),
    "exact_299x299": ("BytheWater", (299, 299), "RGB", dict(quality=90, subsampling=2)),
    "wide_optimized_1000x200": ("Path", (1000, 200), "RGB", dict(quality=80, subsampling=2, optimize=True)),
    "restart_markers_640x427": ("EveningGlow", (640, 427), "RGB", dict(quality=90, subsampling=2,
                                                                      restart_marker_blocks=7)),
}
PHOTO_SIZE = (640, 400)  # the photo JPEGs (4:2:0, quality 90) for the top-1 spread


def cache_dir():
    return os.environ.get("MODEL_SERVER_CACHE") or os.path.expanduser("~/.cache/swift-model-server")


def root_dir():
    return os.path.join(cache_dir(), "savedmodels")


def log(message):
    print(message, flush=True)


def ensure_photos(root):
    """photos/<Name>.jpg: the originals, unpacked from the .debs (fetched once)."""
    directory = os.path.join(root, "photos")
    os.makedirs(directory, exist_ok=True)
    wanted = {}
    for group in (TEST_PHOTOS, CALIBRATION_PHOTOS):
        for package, names in group.items():
            wanted.setdefault(package, []).extend(names)
    for package, names in wanted.items():
        missing = [n for n in names if not os.path.exists(os.path.join(directory, f"{n}.jpg"))]
        if not missing:
            continue
        log(f"photos: apt-get download {package}")
        work = os.path.join(directory, "_deb")
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
        subprocess.run(["apt-get", "download", package], cwd=work, check=True, capture_output=True)
        deb = glob.glob(os.path.join(work, f"{package}_*.deb"))[0]
        members = ["./" + PACKAGES[package].format(n) for n in missing]
        tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", deb], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", work, *members], input=tar, check=True)
        for name, member in zip(missing, members):
            os.replace(os.path.join(work, member), os.path.join(directory, f"{name}.jpg"))
        shutil.rmtree(work)
    return directory


def _fit(image, size):
    """Centre-crop `image` to the aspect ratio of `size`, then Lanczos-resize to it."""
    from PIL import Image

    width, height = image.size
    target_w, target_h = size
    if width * target_h > height * target_w:  # too wide
        crop_w = height * target_w // target_h
        box = ((width - crop_w) // 2, 0, (width - crop_w) // 2 + crop_w, height)
    else:
        crop_h = width * target_h // target_w
        box = (0, (height - crop_h) // 2, width, (height - crop_h) // 2 + crop_h)
    return image.crop(box).resize(size, Image.LANCZOS)


def ensure_jpegs(root, photos):
    """jpegs/<kind>.jpg and jpegs/photo_<Name>.jpg, with jpegs/index.json (written last)."""
    from PIL import Image

    directory = os.path.join(root, "jpegs")
    index_path = os.path.join(directory, "index.json")
    if os.path.exists(index_path):
        with open(index_path) as f:
            index = json.load(f)
        if index.get("generator_version") == GENERATOR_VERSION and all(
                os.path.exists(os.path.join(directory, e["file"])) for e in index["jpegs"]):
            return index
    os.makedirs(directory, exist_ok=True)
    entries = []

    def save(file, photo, size, mode, options, kind):
        image = _fit(Image.open(os.path.join(photos, f"{photo}.jpg")).convert("RGB"), size).convert(mode)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", **options)
        data = buffer.getvalue()
        with open(os.path.join(directory, file), "wb") as f:
            f.write(data)
        check = Image.open(io.BytesIO(data))
        from PIL import JpegImagePlugin

        sampling = JpegImagePlugin.get_sampling(check) if len(check.layer) == 3 else -1
        entries.append({"file": file, "kind": kind, "photo": photo, "width": size[0], "height": size[1],
                        "mode": mode, "progressive": bool(check.info.get("progressive", 0)),
                        "components": len(check.layer),
                        "sampling_factors": [list(layer[1:3]) for layer in check.layer],
                        "subsampling": {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}.get(sampling, "n/a"),
                        "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})

    for kind, (photo, size, mode, options) in JPEG_KINDS.items():
        save(f"{kind}.jpg", photo, size, mode, options, kind)
    for names in TEST_PHOTOS.values():
        for photo in names:
            save(f"photo_{photo}.jpg", photo, PHOTO_SIZE, "RGB", dict(quality=90, subsampling=2), "photo")
    index = {"generator_version": GENERATOR_VERSION, "jpegs": entries}
    with open(index_path + ".tmp", "w") as f:
        json.dump(index, f, indent=2)
    os.replace(index_path + ".tmp", index_path)
    return index


def kind_files(index):
    return [e["file"] for e in index["jpegs"] if e["kind"] != "photo"]


def photo_files(index):
    return [e["file"] for e in index["jpegs"] if e["kind"] == "photo"]


def calibration_batch(photos, side, count=14):
    """`count` RGB uint8 [side, side, 3] crops (random position and scale, seeded) of the
    calibration photos."""
    from PIL import Image

    rng = np.random.default_rng(SEED + 7)
    names = [n for group in CALIBRATION_PHOTOS.values() for n in group]
    out = []
    for k in range(count):
        image = Image.open(os.path.join(photos, f"{names[k % len(names)]}.jpg")).convert("RGB")
        width, height = image.size
        crop = int(min(width, height) * rng.uniform(0.35, 1.0))
        x0, y0 = int(rng.integers(0, width - crop + 1)), int(rng.integers(0, height - crop + 1))
        image = image.crop((x0, y0, x0 + crop, y0 + crop)).resize((side, side), Image.BILINEAR)
        if rng.uniform() < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        out.append(np.asarray(image))
    return np.stack(out)


def photo_batch(root, index, side):
    """The test photos as RGB uint8 [n, side, side, 3] (centre square, bilinear) and their names."""
    from PIL import Image

    files = photo_files(index)
    images = [np.asarray(_fit(Image.open(os.path.join(root, "jpegs", f)).convert("RGB"), (side, side)))
              for f in files]
    return np.stack(images), files


# ------------------------------------------------------------------------------ helpers (in children)

def configure_tf():
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    return tf


def model_seed(name):
    return SEED + int(hashlib.sha256(name.encode()).hexdigest()[:6], 16)


def top1_spread(logits):
    top1 = np.argmax(logits, axis=1)
    return {"distinct_top1": int(len(set(top1.tolist()))), "images": int(len(top1)), "top1": top1.tolist(),
            "logit_std_across_images_mean": float(logits.std(axis=0).mean()),
            "logit_std_within_image_mean": float(logits.std(axis=1).mean())}


def tensor_info_json(info):
    from tensorflow.python.framework import dtypes

    shape = None if info.tensor_shape.unknown_rank else [d.size for d in info.tensor_shape.dim]
    dtype = dtypes.as_dtype(info.dtype).name if info.dtype else "invalid"  # an init op's NoOp output
    return {"name": info.name, "dtype": dtype, "shape": shape}


def describe_savedmodel(export_dir):
    """Signatures (from saved_model.pb, as TF's loader reads it), init op, op census."""
    import collections

    from tensorflow.core.protobuf import saved_model_pb2

    model = saved_model_pb2.SavedModel()
    with open(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
        model.ParseFromString(f.read())
    [meta] = [m for m in model.meta_graphs if list(m.meta_info_def.tags) == ["serve"]]
    signatures = {}
    for key, sig in sorted(meta.signature_def.items()):
        signatures[key] = {"method_name": sig.method_name,
                           "inputs": {k: tensor_info_json(v) for k, v in sorted(sig.inputs.items())},
                           "outputs": {k: tensor_info_json(v) for k, v in sorted(sig.outputs.items())}}
    ops = collections.Counter(n.op for n in meta.graph_def.node)
    for function in meta.graph_def.library.function:
        ops.update(n.op for n in function.node_def)
    files = {}
    for dirpath, _, filenames in os.walk(export_dir):
        for file in filenames:
            path = os.path.join(dirpath, file)
            files[os.path.relpath(path, export_dir)] = os.path.getsize(path)
    return {"signatures": signatures,
            "collections": sorted(meta.collection_def),
            "stripped_default_attrs": meta.meta_info_def.stripped_default_attrs,
            "op_types": dict(sorted(ops.items())),
            "files": dict(sorted(files.items())),
            "bytes": sum(files.values())}


def as_bytes(array):
    """TF's string results (numpy object arrays of bytes) as a numpy 'S' array."""
    array = np.asarray(array)
    return np.array(array.tolist(), dtype=np.bytes_).reshape(array.shape)


CONDITIONING_LIMIT = 0.25  # of the tests' tolerance (EfficientNetB0 uses 13%, the others < 1%)


def check_conditioning(a, b, what):
    """a and b (TF's answers for the same inputs computed two ways) differ by at most a quarter
    of the tests' tolerance (atol 1e-4 * max|ref| + rtol 1e-3 * |ref|)."""
    allowed = 1e-4 * float(np.abs(b).max()) + 1e-3 * np.abs(b)
    used = float((np.abs(a - b) / allowed).max())
    log(f"  {what}: max |diff| {np.abs(a - b).max():.3g}, {used:.1%} of the tolerance")
    assert used <= CONDITIONING_LIMIT, f"{what}: ill-conditioned fixture ({used:.1%} of the tolerance)"
    return {"max_abs": float(np.abs(a - b).max()), "fraction_of_tolerance": used}


def write_meta(out, meta):
    path = os.path.join(out, "reference", "meta.json")
    with open(path + ".tmp", "w") as f:
        json.dump(meta, f, indent=2)
    os.replace(path + ".tmp", path)


def save_npy(out, name, array):
    np.save(os.path.join(out, "reference", name), array)


def copy_inputs(root, out, files):
    directory = os.path.join(out, "reference", "inputs")
    os.makedirs(directory, exist_ok=True)
    for file in files:
        shutil.copyfile(os.path.join(root, "jpegs", file), os.path.join(directory, file))


def randomize_and_calibrate(model, calib, rng):
    """Random conv/dense biases and BN gamma/beta; BN moving statistics set to the per-channel
    mean/variance of each layer's input over `calib` (one training-mode pass with momentum 0,
    dropout off), variances floored at a tenth of the layer's median, then perturbed (mean shift
    N(0, 0.1) std, variance x U(0.75, 1.25))."""
    import keras

    bns = [l for l in model._flatten_layers() if isinstance(l, keras.layers.BatchNormalization)]
    for layer in model._flatten_layers():
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense, keras.layers.DepthwiseConv2D)) \
                and getattr(layer, "use_bias", False) and layer.bias is not None:
            sd = 0.5 if isinstance(layer, keras.layers.Dense) else 0.1
            layer.bias.assign(rng.normal(0.0, sd, layer.bias.shape).astype(np.float32))
    for bn in bns:
        if bn.gamma is not None:
            bn.gamma.assign(rng.uniform(0.5, 1.5, bn.gamma.shape).astype(np.float32))
        if bn.beta is not None:
            bn.beta.assign(rng.normal(0.0, 0.1, bn.beta.shape).astype(np.float32))
    momenta = [bn.momentum for bn in bns]
    dropouts = [(l, l.rate) for l in model._flatten_layers() if isinstance(l, keras.layers.Dropout)]
    for bn in bns:
        bn.momentum = 0.0
    for layer, _ in dropouts:
        layer.rate = 0.0
    model(calib, training=True)
    for bn, m in zip(bns, momenta):
        bn.momentum = m
    for layer, rate in dropouts:
        layer.rate = rate
    for bn in bns:
        v = bn.moving_variance.numpy()
        # Channels nearly constant over the calibration images would be amplified up to
        # 1/sqrt(epsilon) on other images, layer after layer: floor at a tenth of the median.
        v = np.maximum(v, 0.1 * float(np.median(v)))
        std = np.sqrt(v + bn.epsilon)
        bn.moving_mean.assign((bn.moving_mean.numpy() + rng.normal(0.0, 0.1, v.shape) * std).astype(np.float32))
        bn.moving_variance.assign((v * rng.uniform(0.75, 1.25, v.shape)).astype(np.float32))
    return len(bns)


def center_classifier(model, calib_x, rng):
    """Standardises the last Dense layer's input features over the calibration images (folded
    into its kernel and bias): the input-independent part of random-net features would otherwise
    pick the same top-1 class for nearly every image."""
    import keras

    dense = [l for l in model._flatten_layers() if isinstance(l, keras.layers.Dense)][-1]
    features = keras.Model(model.inputs, dense.input)(calib_x, training=False).numpy()
    mu, sd = features.mean(axis=0), features.std(axis=0)
    # Features nearly constant over the calibration photos must not be amplified: a floor at a
    # quarter of the median spread keeps the logits well conditioned on other photos.
    sd = np.maximum(sd, 0.25 * float(np.median(sd)) + 1e-6)
    kernel = dense.kernel.numpy() / sd[:, None]
    kernel *= 1.0 / np.sqrt(kernel.shape[0]) / kernel.std()  # logits of O(1)
    dense.kernel.assign(kernel.astype(np.float32))
    dense.bias.assign((-mu @ kernel + rng.normal(0.0, 0.05, kernel.shape[1])).astype(np.float32))


# ------------------------------------------------------------------------------ (a) TF1 Inception

NUM_CLASSES = 1000  # + "unused background" at index 0, as the classic export
TOP_K = 5
IMAGE_SIZE = 299
PIXELS_TENSOR = "map/TensorArrayStack/TensorArrayGatherV3:0"
TF1_LOGITS_TENSOR = "InceptionV3/Logits/BiasAdd:0"


def class_names(count):
    """'unused background' then count synthetic class descriptions (some non-ASCII, some with
    commas, as ImageNet's synset texts have)."""
    names = ["unused background"]
    for k in range(1, count + 1):
        if k % 97 == 0:
            names.append(f"classe {k:04d}, café crème")
        elif k % 31 == 0:
            names.append(f"class {k:04d}, with comma")
        else:
            names.append(f"class {k:04d}")
    return names


def inception_v3_layout():
    """Keras' InceptionV3 topology as a list of steps, in Keras' layer-construction order:
    ("conv", src, dst, filters, kh, kw, stride, padding), ("maxpool"/"avgpool", src, dst, ...),
    ("concat", [srcs], dst)."""
    steps = []
    names = iter(range(10 ** 6))

    def conv(x, filters, kh, kw, stride=1, padding="SAME"):
        dst = f"t{next(names)}"
        steps.append(("conv", x, dst, filters, kh, kw, stride, padding))
        return dst

    def pool(kind, x, size, stride, padding):
        dst = f"t{next(names)}"
        steps.append((kind, x, dst, size, stride, padding))
        return dst

    def concat(xs):
        dst = f"t{next(names)}"
        steps.append(("concat", xs, dst))
        return dst

    x = conv("input", 32, 3, 3, 2, "VALID")
    x = conv(x, 32, 3, 3, 1, "VALID")
    x = conv(x, 64, 3, 3)
    x = pool("maxpool", x, 3, 2, "VALID")
    x = conv(x, 80, 1, 1, 1, "VALID")
    x = conv(x, 192, 3, 3, 1, "VALID")
    x = pool("maxpool", x, 3, 2, "VALID")
    for pool_filters in (32, 64, 64):  # mixed 0, 1, 2
        b1 = conv(x, 64, 1, 1)
        b5 = conv(conv(x, 48, 1, 1), 64, 5, 5)
        b3 = conv(conv(conv(x, 64, 1, 1), 96, 3, 3), 96, 3, 3)
        bp = conv(pool("avgpool", x, 3, 1, "SAME"), pool_filters, 1, 1)
        x = concat([b1, b5, b3, bp])
    b3 = conv(x, 384, 3, 3, 2, "VALID")  # mixed 3
    bd = conv(conv(conv(x, 64, 1, 1), 96, 3, 3), 96, 3, 3, 2, "VALID")
    bp = pool("maxpool", x, 3, 2, "VALID")
    x = concat([b3, bd, bp])
    for c in (128, 160, 160, 192):  # mixed 4..7
        b1 = conv(x, 192, 1, 1)
        b7 = conv(conv(conv(x, c, 1, 1), c, 1, 7), 192, 7, 1)
        bd = conv(conv(conv(conv(conv(x, c, 1, 1), c, 7, 1), c, 1, 7), c, 7, 1), 192, 1, 7)
        bp = conv(pool("avgpool", x, 3, 1, "SAME"), 192, 1, 1)
        x = concat([b1, b7, bd, bp])
    b3 = conv(conv(x, 192, 1, 1), 320, 3, 3, 2, "VALID")  # mixed 8
    b7 = conv(conv(conv(conv(x, 192, 1, 1), 192, 1, 7), 192, 7, 1), 192, 3, 3, 2, "VALID")
    bp = pool("maxpool", x, 3, 2, "VALID")
    x = concat([b3, b7, bp])
    for _ in range(2):  # mixed 9, 10
        b1 = conv(x, 320, 1, 1)
        b3 = conv(x, 384, 1, 1)
        b3 = concat([conv(b3, 384, 1, 3), conv(b3, 384, 3, 1)])
        bd = conv(conv(x, 448, 1, 1), 384, 3, 3)
        bd = concat([conv(bd, 384, 1, 3), conv(bd, 384, 3, 1)])
        bp = conv(pool("avgpool", x, 3, 1, "SAME"), 192, 1, 1)
        x = concat([b1, b3, bd, bp])
    return steps, x


_MEMO = {}  # built networks shared by the models of one child process


def keras_inception_weights(photos, name, root, index):
    """A Keras 3 InceptionV3 (1001 classes) with random weights and photo-calibrated BN; returns
    the model and its weights as [(kernel, beta, mean, var)] per conv + (dense kernel, bias)."""
    if ("tf1", name) not in _MEMO:
        _MEMO[("tf1", name)] = _keras_inception_weights(photos, name, root, index)
    return _MEMO[("tf1", name)]


def _keras_inception_weights(photos, name, root, index):
    import keras

    keras.utils.set_random_seed(model_seed(name))
    model = keras.applications.InceptionV3(weights=None, input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3),
                                           classes=NUM_CLASSES + 1, classifier_activation=None)
    rng = np.random.default_rng(model_seed(name) + 2)
    # Calibration photos plus the test photos (see build_keras).
    calib = np.concatenate([calibration_batch(photos, IMAGE_SIZE), photo_batch(root, index, IMAGE_SIZE)[0]])
    calib = calib.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    randomize_and_calibrate(model, calib, rng)
    center_classifier(model, calib, rng)
    # model.layers is in topological order; the auto-numbered names are in construction order,
    # which inception_v3_layout() follows.
    def number(layer):
        tail = layer.name.rsplit("_", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    convs = sorted((l for l in model.layers if isinstance(l, keras.layers.Conv2D)), key=number)
    bns = sorted((l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)), key=number)
    assert [number(c) for c in convs] == list(range(94)) == [number(b) for b in bns], \
        [c.name for c in convs][:5]
    assert len(convs) == len(bns) == 94, (len(convs), len(bns))
    blocks = [(c.kernel.numpy(), b.beta.numpy(), b.moving_mean.numpy(), b.moving_variance.numpy())
              for c, b in zip(convs, bns)]
    dense = model.layers[-1]
    return model, blocks, (dense.kernel.numpy(), dense.bias.numpy())


def build_tf1_inception(name, out, root, index, photos, fused):
    """TF Serving's inception_saved_model.py, in TF1 graph mode (VariableV2, while_v1 map_fn over
    TensorArrayV3, ParseExample, index_to_string table, legacy_init_op collection)."""
    tf = configure_tf()
    keras_model, blocks, (dense_kernel, dense_bias) = keras_inception_weights(photos, "inception_tf1", root, index)

    tf.compat.v1.disable_control_flow_v2()
    tf.compat.v1.disable_resource_variables()
    v1 = tf.compat.v1
    graph = tf.Graph()
    names = class_names(NUM_CLASSES)
    with graph.as_default():
        serialized_tf_example = v1.placeholder(tf.string, name="tf_example")
        with tf.name_scope("ParseExample"):  # tf.parse_example of TF 1.x: the ParseExample op
            parsed = tf.raw_ops.ParseExample(
                serialized=serialized_tf_example, names=tf.constant([], tf.string), sparse_keys=[],
                dense_keys=[tf.constant("image/encoded")], dense_defaults=[tf.constant([], tf.string)],
                sparse_types=[], dense_shapes=[[]], name="ParseExample")
        jpegs = parsed.dense_values[0]

        def preprocess_image(image_buffer):
            image = tf.image.decode_jpeg(image_buffer, channels=3)
            image = tf.image.convert_image_dtype(image, dtype=tf.float32)
            image = tf.image.central_crop(image, central_fraction=0.875)
            image = tf.expand_dims(image, 0)
            image = v1.image.resize_bilinear(image, [IMAGE_SIZE, IMAGE_SIZE], align_corners=False)
            image = tf.squeeze(image, [0])
            image = tf.subtract(image, 0.5)
            image = tf.multiply(image, 2.0)
            return image

        images = tf.map_fn(preprocess_image, jpegs, dtype=tf.float32)
        assert images.name == PIXELS_TENSOR, images.name

        variables = []  # (variable, value)
        steps, last = inception_v3_layout()
        tensors = {"input": images}
        conv_index = 0
        with v1.variable_scope("InceptionV3"):
            for step in steps:
                kind = step[0]
                if kind == "conv":
                    _, src, dst, filters, kh, kw, stride, padding = step
                    kernel_value, beta_value, mean_value, var_value = blocks[conv_index]
                    assert kernel_value.shape == (kh, kw, tensors[src].shape[-1], filters), \
                        (conv_index, kernel_value.shape, (kh, kw, filters))
                    suffix = "" if conv_index == 0 else f"_{conv_index}"
                    with v1.variable_scope(f"conv2d{suffix}"):
                        kernel = v1.get_variable("kernel", kernel_value.shape, tf.float32,
                                                 v1.zeros_initializer(), use_resource=False)
                        y = tf.nn.conv2d(tensors[src], kernel, [1, stride, stride, 1], padding, name="Conv2D")
                    with v1.variable_scope(f"batch_normalization{suffix}"):
                        beta = v1.get_variable("beta", beta_value.shape, tf.float32, v1.zeros_initializer(),
                                               use_resource=False)
                        mean = v1.get_variable("moving_mean", mean_value.shape, tf.float32,
                                               v1.zeros_initializer(), use_resource=False, trainable=False)
                        var = v1.get_variable("moving_variance", var_value.shape, tf.float32,
                                              v1.ones_initializer(), use_resource=False, trainable=False)
                        variables += [(kernel, kernel_value), (beta, beta_value), (mean, mean_value),
                                      (var, var_value)]
                        if fused:
                            y, _, _ = v1.nn.fused_batch_norm(y, tf.ones([filters]), beta, mean=mean,
                                                             variance=var, epsilon=0.001, is_training=False)
                        else:
                            y = tf.nn.batch_normalization(y, mean, var, offset=beta, scale=None,
                                                          variance_epsilon=0.001)
                    with tf.name_scope(f"activation{suffix}"):
                        tensors[dst] = tf.nn.relu(y)
                    conv_index += 1
                elif kind in ("maxpool", "avgpool"):
                    _, src, dst, size, stride, padding = step
                    op = tf.nn.max_pool2d if kind == "maxpool" else tf.nn.avg_pool2d
                    tensors[dst] = op(tensors[src], size, stride, padding)
                else:
                    _, srcs, dst = step
                    tensors[dst] = tf.concat([tensors[s] for s in srcs], axis=3)
            assert conv_index == len(blocks)
            with v1.variable_scope("Logits"):
                weights = v1.get_variable("kernel", dense_kernel.shape, tf.float32, v1.zeros_initializer(),
                                          use_resource=False)
                biases = v1.get_variable("bias", dense_bias.shape, tf.float32, v1.zeros_initializer(),
                                         use_resource=False)
                variables += [(weights, dense_kernel), (biases, dense_bias)]
                pooled = tf.reduce_mean(tensors[last], [1, 2], name="avg_pool")
                logits = tf.nn.bias_add(tf.matmul(pooled, weights), biases, name="BiasAdd")
        assert logits.name == TF1_LOGITS_TENSOR, logits.name

        values, indices = tf.nn.top_k(logits, TOP_K)
        class_tensor = tf.constant(names)
        from tensorflow.python.ops import gen_lookup_ops

        if fused:
            # tf.contrib.lookup.index_to_string_table_from_tensor as TF 1.x wrote it (and the
            # classic export has it): HashTableV2 filled by InitializeTableV2 with keys
            # Cast(Range(n)), in the table_initializer collection.
            with tf.name_scope("index_to_string"):
                table_handle = gen_lookup_ops.hash_table_v2(key_dtype=tf.int64, value_dtype=tf.string,
                                                            shared_name="", use_node_name_sharing=False,
                                                            name="hash_table")
                keys = tf.cast(tf.range(len(names)), tf.int64, name="ToInt64")
                table_init = gen_lookup_ops.initialize_table_v2(table_handle, keys, class_tensor,
                                                                name="table_init")
            v1.add_to_collection(v1.GraphKeys.TABLE_INITIALIZERS, table_init)
            default_value = tf.constant("UNK")
        else:
            # TF 2.x's version of the same helper: LookupTableImportV2 fills the table.
            from tensorflow.python.ops import lookup_ops

            table = lookup_ops.index_to_string_table_from_tensor(class_tensor)
            table_handle, default_value = table.resource_handle, table.default_value
        # One LookupTableFindV2 named as TF 1.x named it.
        classes = gen_lookup_ops.lookup_table_find_v2(table_handle, tf.cast(indices, tf.int64), default_value,
                                                      name="index_to_string_Lookup")

        export_dir = os.path.join(out, "1")
        builder = v1.saved_model.builder.SavedModelBuilder(export_dir)
        build = v1.saved_model.utils.build_tensor_info
        constants = v1.saved_model.signature_constants
        classification_signature = v1.saved_model.signature_def_utils.build_signature_def(
            inputs={constants.CLASSIFY_INPUTS: build(serialized_tf_example)},
            outputs={constants.CLASSIFY_OUTPUT_CLASSES: build(classes),
                     constants.CLASSIFY_OUTPUT_SCORES: build(values)},
            method_name=constants.CLASSIFY_METHOD_NAME)
        prediction_signature = v1.saved_model.signature_def_utils.build_signature_def(
            inputs={"images": build(jpegs)},
            outputs={"classes": build(classes), "scores": build(values)},
            method_name=constants.PREDICT_METHOD_NAME)
        legacy_init_op = tf.group(v1.tables_initializer(), name="legacy_init_op")
        # TF 1.x's builder put legacy_init_op in the "legacy_init_op" collection; TF 2.x's moved
        # it to "saved_model_main_op". Real classic exports have the former, so write that.
        v1.add_to_collection(v1.saved_model.constants.LEGACY_INIT_OP_KEY, legacy_init_op)

        with v1.Session(graph=graph, config=v1.ConfigProto(intra_op_parallelism_threads=2,
                                                           inter_op_parallelism_threads=1)) as sess:
            sess.run(v1.global_variables_initializer())
            for variable, value in variables:
                variable.load(value, sess)
            builder.add_meta_graph_and_variables(
                sess, [v1.saved_model.tag_constants.SERVING],
                signature_def_map={"predict_images": prediction_signature,
                                   constants.DEFAULT_SERVING_SIGNATURE_DEF_KEY: classification_signature})
            builder.save()

    # TensorFlow's answers, from the export as TF's loader loads it.
    files = kind_files(index) + photo_files(index)
    copy_inputs(root, out, files)
    jpeg_bytes = [open(os.path.join(root, "jpegs", f), "rb").read() for f in files]
    examples = []
    for data in jpeg_bytes:
        example = tf.train.Example(features=tf.train.Features(feature={
            "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[data]))}))
        examples.append(example.SerializeToString())
    for file, example in zip(files, examples):
        with open(os.path.join(out, "reference", "inputs", file[:-4] + ".example"), "wb") as f:
            f.write(example)
    with tf.Graph().as_default() as load_graph, v1.Session(graph=load_graph) as sess:
        meta = v1.saved_model.loader.load(sess, ["serve"], export_dir)
        predict = meta.signature_def["predict_images"]
        classify = meta.signature_def["serving_default"]
        fetches = {"classes": predict.outputs["classes"].name, "scores": predict.outputs["scores"].name,
                   "logits": TF1_LOGITS_TENSOR, "pixels": PIXELS_TENSOR}
        ref = {k: [] for k in fetches}
        for data in jpeg_bytes:  # one at a time: each row is TF's answer for that JPEG alone
            r = sess.run(fetches, {predict.inputs["images"].name: [data]})
            for k in fetches:
                ref[k].append(r[k][0])
        ref = {k: np.stack(v) for k, v in ref.items()}
        ref["classes"] = as_bytes(ref["classes"])
        batch = sess.run(fetches, {predict.inputs["images"].name: jpeg_bytes[:4]})
        cls = sess.run({"classes": classify.outputs["classes"].name, "scores": classify.outputs["scores"].name},
                       {classify.inputs["inputs"].name: examples})
    batch["classes"], cls["classes"] = as_bytes(batch["classes"]), as_bytes(cls["classes"])
    for k in ("classes", "scores", "logits"):
        same = np.array_equal(batch[k], ref[k][:4]) if k == "classes" else \
            float(np.abs(batch[k] - ref[k][:4]).max())
        log(f"  batch of 4 vs one at a time, {k}: {same}")
    assert np.array_equal(batch["pixels"], ref["pixels"][:4])
    conditioning = check_conditioning(batch["logits"], ref["logits"][:4], f"{name}: logits batch 4 vs 1")
    assert np.array_equal(cls["classes"], ref["classes"]), "classify and predict_images disagree"
    np.testing.assert_allclose(cls["scores"], ref["scores"], rtol=1e-5, atol=1e-5)
    # The graph computes what the Keras model it was copied from computes.
    keras_logits = keras_model(ref["pixels"][:4], training=False).numpy()
    keras_gap = float(np.abs(keras_logits - ref["logits"][:4]).max())
    log(f"  max |Keras InceptionV3 - TF1 graph| logits = {keras_gap:.3g}")
    assert keras_gap <= 1e-3 * max(1.0, float(np.abs(keras_logits).max())), keras_gap
    assert ref["classes"].dtype.kind == "S"
    save_npy(out, "classes.npy", ref["classes"])
    save_npy(out, "scores.npy", ref["scores"])
    save_npy(out, "logits.npy", ref["logits"])
    save_npy(out, "pixels.npy", ref["pixels"])
    save_npy(out, "classify_classes.npy", cls["classes"])
    save_npy(out, "classify_scores.npy", cls["scores"])
    with open(os.path.join(out, "reference", "labels.txt"), "w") as f:
        f.write("\n".join(names) + "\n")
    photos_rows = slice(len(kind_files(index)), len(files))
    return {
        "kind": "tf1_inception", "batch_norm": "FusedBatchNormV3" if fused else "decomposed",
        "table_init": "InitializeTableV2" if fused else "LookupTableImportV2",
        "inputs": files, "examples": [f[:-4] + ".example" for f in files],
        "outputs": {"classes": "classes.npy", "scores": "scores.npy"},
        "fetches": {TF1_LOGITS_TENSOR: "logits.npy", PIXELS_TENSOR: "pixels.npy"},
        "classify_outputs": {"classes": "classify_classes.npy", "scores": "classify_scores.npy"},
        "labels": "labels.txt", "num_classes": NUM_CLASSES + 1, "top_k": TOP_K,
        "keras_vs_graph_max_abs": keras_gap, "conditioning": conditioning,
        "top1_spread_photos": top1_spread(ref["logits"][photos_rows]),
        "top1_spread_all": top1_spread(ref["logits"]),
    }


# ------------------------------------------------------------------------------ (b) Keras 3 exports

KERAS_ARCHS = {
    "inception_v3": ("InceptionV3", 299, "inception"),
    "resnet50": ("ResNet50", 224, "caffe"),
    "mobilenet_v2": ("MobileNetV2", 224, "inception"),
    "efficientnet_b0": ("EfficientNetB0", 224, "raw"),
}


def keras_preprocess(images_uint8, mode):
    """keras.applications' preprocess_input for each family, in numpy (float32)."""
    x = images_uint8.astype(np.float32)
    if mode == "inception":
        return x / np.float32(127.5) - np.float32(1.0)
    if mode == "caffe":
        return x[..., ::-1] - np.array([103.939, 116.779, 123.68], np.float32)
    return x  # EfficientNet: the model rescales and normalises itself


def build_keras(name, out, root, index, photos, arch, method):
    tf = configure_tf()
    import keras

    ctor, side, mode = KERAS_ARCHS[arch]
    if ("keras", arch) not in _MEMO:  # one network for both export methods
        keras.utils.set_random_seed(model_seed(arch))
        model = getattr(keras.applications, ctor)(weights=None, input_shape=(side, side, 3),
                                                  classifier_activation=None)
        rng = np.random.default_rng(model_seed(arch) + 2)
        # The test photos are part of the calibration set: random deep nets calibrated on other
        # photos only give some test photos huge, ill-conditioned logits (EfficientNetB0: |logit|
        # up to 425 and TF's own batch-1 vs batch-17 answers 2.3 apart).
        calib = keras_preprocess(np.concatenate([calibration_batch(photos, side),
                                                 photo_batch(root, index, side)[0]]), mode)
        n_bn = randomize_and_calibrate(model, calib, rng)
        center_classifier(model, calib, rng)
        _MEMO[("keras", arch)] = model, n_bn
    model, n_bn = _MEMO[("keras", arch)]
    export_dir = os.path.join(out, "1")
    if method == "export":
        model.export(export_dir, format="tf_saved_model", verbose=False)
    else:
        tf.saved_model.save(model, export_dir)
    images, files = photo_batch(root, index, side)
    x = keras_preprocess(images, mode)
    loaded = tf.saved_model.load(export_dir)
    signature = loaded.signatures["serving_default"]
    [(input_name, spec)] = signature.structured_input_signature[1].items()
    outputs = signature(**{input_name: tf.constant(x)})
    [(output_name, y)] = outputs.items()
    y = y.numpy()
    eager = model(x, training=False).numpy()
    gap = float(np.abs(eager - y).max())
    log(f"  max |Keras eager - loaded SavedModel| = {gap:.3g} (max |logit| {np.abs(y).max():.3g})")
    # Conditioning: TensorFlow's own answers for one image alone and in the batch must agree to
    # well within the tests' tolerance, or the tolerance would fail correct implementations.
    single = np.concatenate([signature(**{input_name: tf.constant(x[i:i + 1])})[output_name].numpy()
                             for i in range(len(x))])
    conditioning = check_conditioning(single, y, f"{name}: TensorFlow batch 1 vs batch {len(x)}")
    os.makedirs(os.path.join(out, "reference"), exist_ok=True)
    save_npy(out, "input.npy", x)
    save_npy(out, f"{output_name}.npy", y)
    with open(os.path.join(out, "reference", "photos.txt"), "w") as f:
        f.write("\n".join(files) + "\n")
    return {"kind": f"keras3_{method}", "architecture": ctor, "side": side, "preprocessing": mode,
            "batch_norm_layers": n_bn, "params": int(model.count_params()),
            "signature_input": input_name, "signature_output": output_name,
            "inputs": {input_name: "input.npy"}, "outputs": {output_name: f"{output_name}.npy"},
            "photos": files, "keras_eager_vs_savedmodel_max_abs": gap, "conditioning": conditioning,
            "top1_spread_photos": top1_spread(y)}


# ------------------------------------------------------------------------------ (c) TF2 tf.Module

TF2_SIDE = 96
TF2_CLASSES = 20
TF2_TOP_K = 5


def tf2_labels():
    return [f"label {k:02d}" if k % 7 else f"étiquette {k:02d}" for k in range(TF2_CLASSES)]


def build_tf2_module(name, out, root, index, photos):
    tf = configure_tf()
    rng = np.random.default_rng(model_seed(name))
    vocab_dir = os.path.join(out, "vocab")
    os.makedirs(vocab_dir, exist_ok=True)
    vocab_path = os.path.join(vocab_dir, "labels.txt")
    labels = tf2_labels()
    with open(vocab_path, "w", encoding="utf-8") as f:
        f.write("\n".join(labels) + "\n")

    def preprocess_one(data):
        image = tf.io.decode_jpeg(data, channels=3)
        image = tf.image.convert_image_dtype(image, tf.float32)
        image = tf.image.central_crop(image, 0.875)
        image = tf.image.resize(image, [TF2_SIDE, TF2_SIDE], method="bilinear")  # half-pixel centres
        return (image - 0.5) * 2.0

    class JpegClassifier(tf.Module):
        def __init__(self):
            super().__init__()
            self.kernel = tf.Variable(rng.normal(0, 0.4, (3, 3, 3, 16)).astype(np.float32), name="kernel")
            self.bias = tf.Variable(rng.normal(0, 0.1, (16,)).astype(np.float32), name="bias")
            self.dense = tf.Variable(rng.normal(0, 1.0, (16, TF2_CLASSES)).astype(np.float32), name="dense")
            self.dense_bias = tf.Variable(np.zeros(TF2_CLASSES, np.float32), name="dense_bias")
            initializer = tf.lookup.TextFileInitializer(
                vocab_path, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER, tf.string,
                tf.lookup.TextFileIndex.WHOLE_LINE)
            self.table = tf.lookup.StaticHashTable(initializer, default_value="UNK")

        def preprocess_batch(self, images):
            return tf.map_fn(preprocess_one, images, fn_output_signature=tf.float32)

        def features(self, pixels):
            y = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(pixels, self.kernel, 2, "SAME"), self.bias))
            return tf.reduce_mean(y, [1, 2])

        def logits(self, pixels):
            return tf.nn.bias_add(tf.matmul(self.features(pixels), self.dense), self.dense_bias)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
        def classify(self, images):
            scores, indices = tf.math.top_k(self.logits(self.preprocess_batch(images)), TF2_TOP_K)
            return {"classes": self.table.lookup(tf.cast(indices, tf.int64)), "scores": scores}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
        def preprocess(self, images):
            return {"pixels": self.preprocess_batch(images)}

    module = JpegClassifier()
    # Calibrate the conv bias so the features are centred over the calibration photos (otherwise
    # ReLU + mean pooling gives near-constant logits).
    calib = [tf.io.encode_jpeg(tf.constant(img)).numpy() for img in calibration_batch(photos, 160, count=16)]
    calib += [open(os.path.join(root, "jpegs", f), "rb").read() for f in kind_files(index)]
    pixels = module.preprocess_batch(tf.constant(calib))
    conv = tf.nn.conv2d(pixels, module.kernel, 2, "SAME").numpy()
    module.bias.assign((-conv.mean(axis=(0, 1, 2)) + rng.normal(0, 0.05, 16)).astype(np.float32))
    # Standardise the pooled features over the calibration photos (folded into the dense layer).
    features = module.features(pixels).numpy()
    mu, sd = features.mean(axis=0), features.std(axis=0) + 1e-3
    w = module.dense.numpy()
    module.dense.assign((w / sd[:, None]).astype(np.float32))
    module.dense_bias.assign((-(mu / sd) @ w).astype(np.float32))
    features = module.logits(pixels).numpy()
    export_dir = os.path.join(out, "1")
    tf.saved_model.save(module, export_dir, signatures={"serving_default": module.classify,
                                                        "preprocess": module.preprocess})
    shutil.rmtree(vocab_dir)  # the export has its own copy under assets/

    files = kind_files(index) + photo_files(index)
    copy_inputs(root, out, files)
    jpeg_bytes = [open(os.path.join(root, "jpegs", f), "rb").read() for f in files]
    loaded = tf.saved_model.load(export_dir)
    ref = {"classes": [], "scores": [], "pixels": []}
    for data in jpeg_bytes:
        r = loaded.signatures["serving_default"](images=tf.constant([data]))
        p = loaded.signatures["preprocess"](images=tf.constant([data]))
        ref["classes"].append(r["classes"].numpy()[0])
        ref["scores"].append(r["scores"].numpy()[0])
        ref["pixels"].append(p["pixels"].numpy()[0])
    ref = {k: np.stack(v) for k, v in ref.items()}
    ref["classes"] = as_bytes(ref["classes"])
    batch = loaded.signatures["serving_default"](images=tf.constant(jpeg_bytes[:4]))
    assert np.array_equal(as_bytes(batch["classes"].numpy()), ref["classes"][:4])
    for k in ref:
        save_npy(out, f"{k}.npy", ref[k])
    photos_rows = slice(len(kind_files(index)), len(files))
    top1 = [c[0].decode() for c in ref["classes"][photos_rows]]
    return {"kind": "tf2_module", "inputs": files, "labels": labels,
            "outputs": {"classes": "classes.npy", "scores": "scores.npy"},
            "preprocess_outputs": {"pixels": "pixels.npy"},
            "side": TF2_SIDE, "top_k": TF2_TOP_K, "calibration_logit_std": float(features.std(axis=0).mean()),
            "top1_spread_photos": {"distinct_top1": len(set(top1)), "images": len(top1), "top1": top1}}


# ------------------------------------------------------------------------------ (e) broken exports

def build_unsupported_op(name, out, root, index, photos):
    """A TF2 module with ops no image server implements (RFFT, ComplexAbs)."""
    tf = configure_tf()

    class Spectrum(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 16], tf.float32, name="x")])
        def serve(self, x):
            return {"magnitude": tf.abs(tf.signal.rfft(x))}

    module = Spectrum()
    export_dir = os.path.join(out, "1")
    tf.saved_model.save(module, export_dir, signatures={"serving_default": module.serve})
    x = np.random.default_rng(model_seed(name)).normal(size=(2, 16)).astype(np.float32)
    y = tf.saved_model.load(export_dir).signatures["serving_default"](x=tf.constant(x))["magnitude"].numpy()
    os.makedirs(os.path.join(out, "reference"), exist_ok=True)
    save_npy(out, "x.npy", x)
    save_npy(out, "magnitude.npy", y)
    return {"kind": "broken", "problem": "unsupported ops", "unsupported_ops": ["RFFT", "ComplexAbs"],
            "inputs": {"x": "x.npy"}, "outputs": {"magnitude": "magnitude.npy"}}


def tf_load_error(export_dir):
    """TensorFlow's own complaint when loading `export_dir` (None if it loads and runs)."""
    tf = configure_tf()
    try:
        loaded = tf.saved_model.load(export_dir)
        signature = loaded.signatures["serving_default"]
        signature(images=tf.constant([open(os.path.join(root_dir(), "jpegs", "exact_299x299.jpg"), "rb").read()]))
    except Exception as error:  # noqa: BLE001 (any failure is the answer)
        return f"{type(error).__name__}: {' '.join(str(error).split())[:800]}"
    return None


def build_broken_copy(name, out, root, index, photos, problem):
    """A copy of tf2_jpeg_module/1 with one thing wrong with its files."""
    source = os.path.join(root, "tf2_jpeg_module", "1")
    if not os.path.exists(os.path.join(root, "tf2_jpeg_module", "reference", "meta.json")):
        raise SystemExit(f"{name} needs tf2_jpeg_module: build it first")
    export_dir = os.path.join(out, "1")
    shutil.copytree(source, export_dir)
    os.makedirs(os.path.join(out, "reference"), exist_ok=True)
    info = {"kind": "broken", "problem": problem, "source": "tf2_jpeg_module"}
    [data_file] = glob.glob(os.path.join(export_dir, "variables", "variables.data-*"))
    if problem == "checksum":
        # Flip one byte in the middle of the largest variable's stored bytes.
        import tensorflow as tf

        reader = tf.train.load_checkpoint(os.path.join(source, "variables", "variables"))
        shapes = reader.get_variable_to_shape_map()
        dtypes = reader.get_variable_to_dtype_map()
        key = max((k for k in shapes if dtypes[k] != tf.string), key=lambda k: int(np.prod(shapes[k])))
        value = np.ascontiguousarray(reader.get_tensor(key)).tobytes()
        blob = bytearray(open(data_file, "rb").read())
        offset = blob.find(value)
        assert offset >= 0 and blob.find(value, offset + 1) < 0, "variable bytes not found exactly once"
        flip = offset + len(value) // 2
        blob[flip] ^= 0x10
        with open(data_file, "wb") as f:
            f.write(blob)
        info.update(variable=key, data_file=os.path.relpath(data_file, export_dir), byte_offset=flip)
    elif problem == "missing_shard":
        os.remove(data_file)
        info.update(removed=os.path.relpath(data_file, export_dir))
    elif problem == "truncated_pb":
        path = os.path.join(export_dir, "saved_model.pb")
        blob = open(path, "rb").read()
        with open(path, "wb") as f:
            f.write(blob[:len(blob) // 2])
        info.update(original_bytes=len(blob), truncated_to=len(blob) // 2)
    else:
        raise ValueError(problem)
    info["tensorflow_error"] = tf_load_error(export_dir).replace(out + os.sep, os.path.join(root, name) + os.sep)
    log(f"  TensorFlow says: {info['tensorflow_error']}")
    assert info["tensorflow_error"], "TensorFlow loads the broken copy"
    return info


# ------------------------------------------------------------------------------ registry and driver

MODELS = {
    "inception_tf1": lambda n, o, r, i, p: build_tf1_inception(n, o, r, i, p, fused=True),
    "inception_tf1_bn": lambda n, o, r, i, p: build_tf1_inception(n, o, r, i, p, fused=False),
    **{f"keras_{arch}_{method}": (lambda a, m: lambda n, o, r, i, p: build_keras(n, o, r, i, p, a, m))(arch, method)
       for arch in KERAS_ARCHS for method in ("export", "save")},
    "tf2_jpeg_module": build_tf2_module,
    "bad_unsupported_op": build_unsupported_op,
    "bad_checksum": lambda n, o, r, i, p: build_broken_copy(n, o, r, i, p, "checksum"),
    "bad_missing_shard": lambda n, o, r, i, p: build_broken_copy(n, o, r, i, p, "missing_shard"),
    "bad_truncated_pb": lambda n, o, r, i, p: build_broken_copy(n, o, r, i, p, "truncated_pb"),
}


def stamp(index):
    import keras
    import tensorflow as tf
    import PIL

    jpegs = hashlib.sha256(json.dumps(index, sort_keys=True).encode()).hexdigest()
    with open(os.path.abspath(__file__), "rb") as f:
        source = hashlib.sha256(f.read()).hexdigest()  # any change to this script rebuilds
    return {"generator_version": GENERATOR_VERSION, "generator_sha256": source, "seed": SEED,
            "tensorflow": tf.__version__,
            "keras": keras.__version__, "pillow": PIL.__version__, "jpegs": jpegs}


def group_of(name):
    """Models built by one child process: both TF1 variants share one network, both Keras
    export methods of an architecture share one network, the broken copies need the TF2 module."""
    if name.startswith("inception_tf1"):
        return "inception_tf1"
    if name.startswith("keras_"):
        return name.rsplit("_", 1)[0]
    return "tf2"


def build_child(names):
    """Runs in a child process: builds each <root>/<name>.tmp in turn and renames it to
    <root>/<name>."""
    root = root_dir()
    photos = os.path.join(root, "photos")
    with open(os.path.join(root, "jpegs", "index.json")) as f:
        index = json.load(f)
    for name in names:
        log(f"{name}: building")
        out = os.path.join(root, name)
        tmp = out + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(os.path.join(tmp, "reference"))
        t0 = time.time()
        info = MODELS[name](name, tmp, root, index, photos)
        try:
            description = describe_savedmodel(os.path.join(tmp, "1"))
        except Exception as error:  # noqa: BLE001 (a deliberately broken saved_model.pb)
            if info.get("kind") != "broken":
                raise
            description = {"describe_error": f"{type(error).__name__}: {error}", "signatures": {},
                           "bytes": sum(os.path.getsize(os.path.join(d, f))
                                        for d, _, fs in os.walk(os.path.join(tmp, "1")) for f in fs)}
        meta = {"name": name, "stamp": stamp(index), **info, **description, "seconds": round(time.time() - t0, 1)}
        write_meta(tmp, meta)
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)


def summary(meta):
    lines = [f"  {meta['bytes'] / 1e6:.1f} MB, {meta['seconds']} s"]
    if meta.get("conditioning"):
        lines.append(f"  TF batch-size gap: {meta['conditioning']['fraction_of_tolerance']:.2%} of the tolerance")
    for key, sig in meta["signatures"].items():
        if key.startswith("__"):
            continue
        ins = ", ".join(f"{k}={v['name']} {v['dtype']} {v['shape']}" for k, v in sig["inputs"].items())
        outs = ", ".join(f"{k}={v['name']} {v['dtype']} {v['shape']}" for k, v in sig["outputs"].items())
        lines.append(f"  signature {key} ({sig['method_name']}): {ins} -> {outs}")
    spread = meta.get("top1_spread_photos")
    if spread:
        lines.append(f"  top-1 over {spread['images']} photos: {spread['distinct_top1']} distinct {spread['top1']}")
    if meta.get("tensorflow_error"):
        lines.append(f"  TensorFlow: {meta['tensorflow_error']}")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"models (default: all of {', '.join(MODELS)})")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        build_child(args.child.split(","))
        return 0
    unknown = sorted(set(args.names) - set(MODELS))
    if unknown:
        parser.error(f"unknown model(s): {', '.join(unknown)}")

    t0 = time.time()
    root = root_dir()
    os.makedirs(root, exist_ok=True)
    photos = ensure_photos(root)
    index = ensure_jpegs(root, photos)
    import tensorflow  # noqa: F401 (for the stamp only)

    want = stamp(index)
    stale = []
    for name in args.names or MODELS:
        meta_path = os.path.join(root, name, "reference", "meta.json")
        if not args.force and os.path.exists(meta_path):
            with open(meta_path) as f:
                meta = json.load(f)
            if meta.get("stamp") == want:
                log(f"{name}: up to date")
                log(summary(meta))
                continue
        stale.append(name)
    groups = {}
    for name in stale:
        groups.setdefault(group_of(name), []).append(name)
    for group, names in groups.items():
        started = time.time()
        log(f"building {', '.join(names)}")
        subprocess.run([sys.executable, os.path.abspath(__file__), "--child", ",".join(names)], check=True)
        for name in names:
            with open(os.path.join(root, name, "reference", "meta.json")) as f:
                log(f"{name}:\n{summary(json.load(f))}")
        log(f"  {group}: built in {time.time() - started:.0f} s")
    log(f"all done in {time.time() - t0:.0f} s; {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
