"""Shared helpers for the TensorFlow SavedModel tests (test_savedmodel_*.py), importable from
every test venv (numpy, pytest and the standard library only).

The fixtures are made by Tests/Fixtures/make_savedmodels.py (venv-tf2) under $SAVED_MODELS
(scripts/test.sh sets it to $MODEL_SERVER_CACHE/savedmodels): for each model <name>/1/ is the
SavedModel and <name>/reference/ holds the inputs and TensorFlow's own answers, described by
<name>/reference/meta.json (signatures with tensor names, dtypes and shapes as saved_model.pb
has them, the files of each reference, stamp, timing).

Comparisons (issue 13): classes identical; scores and logits within
atol = 1e-4 * max|reference| and rtol = 1e-3; the preprocessed network input (the map_fn
output) bit-identical."""
import json
import os
import pathlib
import shutil
import time

import numpy as np
import pytest

RTOL = 1e-3
ATOL_FRACTION = 1e-4  # of max |reference|

TF1_MODELS = ["inception_tf1", "inception_tf1_bn"]
KERAS_ARCHS = ["inception_v3", "resnet50", "mobilenet_v2", "efficientnet_b0"]
KERAS_MODELS = [f"keras_{arch}_{method}" for arch in KERAS_ARCHS for method in ("export", "save")]
TF2_MODULE = "tf2_jpeg_module"
BAD_MODELS = ["bad_checksum", "bad_missing_shard", "bad_truncated_pb", "bad_unsupported_op"]

# The TF1 export's graph tensors fetched for the exact comparisons (model-run --fetch).
PIXELS_TENSOR = "map/TensorArrayStack/TensorArrayGatherV3:0"
TF1_LOGITS_TENSOR = "InceptionV3/Logits/BiasAdd:0"


def saved_models_root():
    """$SAVED_MODELS, or a skip when it is not set (the fixtures are made by scripts/test.sh)."""
    value = os.environ.get("SAVED_MODELS")
    if not value:
        pytest.skip("SAVED_MODELS is not set: directory of Tests/Fixtures/make_savedmodels.py's output "
                    "(run scripts/test.sh)")
    root = pathlib.Path(value)
    assert root.is_dir(), f"SAVED_MODELS={root} is not a directory"
    return root


class Fixture:
    """One generated model: .export (the SavedModel directory), .meta, reference files."""

    def __init__(self, root, name):
        self.name = name
        self.dir = root / name
        self.export = self.dir / "1"
        self.reference_dir = self.dir / "reference"
        meta_path = self.reference_dir / "meta.json"
        assert meta_path.is_file(), f"{meta_path} is missing: run Tests/Fixtures/make_savedmodels.py"
        self.meta = json.loads(meta_path.read_text())

    def ref(self, file):
        return np.load(self.reference_dir / file)

    def input_path(self, file):
        return self.reference_dir / "inputs" / file

    def input_bytes(self, file):
        return self.input_path(file).read_bytes()

    @property
    def signatures(self):
        return self.meta["signatures"]

    def jpeg_rows(self):
        """{input file: row} of the JPEG-input references."""
        return {file: row for row, file in enumerate(self.meta["inputs"])}

    def kind_files(self):
        return [f for f in self.meta["inputs"] if not f.startswith("photo_")]

    def photo_files(self):
        return [f for f in self.meta["inputs"] if f.startswith("photo_")]


def fixture(root, name):
    return Fixture(root, name)


def fetch_file(tensor_name):
    """model-run --fetch NAME writes OUTDIR/<NAME with '/' and ':' replaced by '_'>.npy."""
    return tensor_name.replace("/", "_").replace(":", "_") + ".npy"


def tolerance(reference):
    return ATOL_FRACTION * float(np.abs(reference).max()), RTOL


def assert_tf_close(actual, reference, what):
    actual = np.asarray(actual)
    assert actual.shape == reference.shape, f"{what}: shape {actual.shape} != TensorFlow's {reference.shape}"
    assert actual.dtype == np.float32, f"{what}: dtype {actual.dtype}, expected float32"
    atol, rtol = tolerance(reference)
    np.testing.assert_allclose(actual, reference, atol=atol, rtol=rtol,
                               err_msg=f"{what} differs from TensorFlow's (atol {atol:.3g}, rtol {rtol})")


def as_bytes_array(values):
    """A list (of lists) of str/bytes as a numpy 'S' array (UTF-8)."""
    def encode(value):
        if isinstance(value, list):
            return [encode(v) for v in value]
        return value.encode() if isinstance(value, str) else bytes(value)
    return np.array(encode(values), dtype=np.bytes_)


def assert_classes_equal(actual, reference, what, labels=None):
    """Identical class strings; on failure, names the rows that differ."""
    actual = np.asarray(actual)
    assert actual.dtype.kind == "S", f"{what}: dtype {actual.dtype}, expected a numpy bytes ('S') array"
    assert actual.shape == reference.shape, f"{what}: shape {actual.shape} != TensorFlow's {reference.shape}"
    if not np.array_equal(actual, reference):
        rows = [i for i in range(len(reference)) if not np.array_equal(actual[i], reference[i])]
        details = "; ".join(f"{labels[i] if labels else i}: {actual[i].tolist()} != {reference[i].tolist()}"
                            for i in rows[:5])
        pytest.fail(f"{what}: {len(rows)} row(s) differ from TensorFlow's: {details}")


def assert_bit_identical(actual, reference, what, labels=None):
    """np.array_equal, row by row; on failure, names the rows and how far off they are."""
    actual = np.asarray(actual)
    assert actual.dtype == reference.dtype, f"{what}: dtype {actual.dtype} != TensorFlow's {reference.dtype}"
    assert actual.shape == reference.shape, f"{what}: shape {actual.shape} != TensorFlow's {reference.shape}"
    bad = []
    for i in range(len(reference)):
        if not np.array_equal(actual[i], reference[i]):
            diff = np.abs(actual[i].astype(np.float64) - reference[i].astype(np.float64))
            bad.append(f"{labels[i] if labels else i}: {int((diff > 0).sum())} of {diff.size} values differ, "
                       f"max {diff.max():.3g}")
    if bad:
        pytest.fail(f"{what} is not bit-identical to TensorFlow's in {len(bad)} of {len(reference)} rows: "
                    + "; ".join(bad))


def copy_version(export_dir, base, version):
    """Copies a SavedModel directory to base/<version> atomically (staged under a non-numeric
    name, then renamed in), so a polling server never sees half a version."""
    base = pathlib.Path(base)
    base.mkdir(parents=True, exist_ok=True)
    staging = base / f".staging-{version}-{time.monotonic_ns()}"
    shutil.copytree(export_dir, staging)
    target = base / str(version)
    os.rename(staging, target)
    return target
