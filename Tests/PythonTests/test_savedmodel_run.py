"""model-run on TensorFlow SavedModels (issue 13), against TensorFlow's own answers recorded
by Tests/Fixtures/make_savedmodels.py:

  model-run EXPORT_DIR [--signature NAME] --input NAME=FILE ... --output OUTDIR [--fetch TENSOR]...

writes OUTDIR/<output alias>.npy for every output of the signature (strings as numpy 'S'
arrays) and OUTDIR/<tensor name with '/' and ':' -> '_'>.npy for every --fetch. A FILE that is
not .npy is one DT_STRING element (its raw bytes); the same input given several times makes a
batch, in order.

Covered: the classic TF1 Inception export (fused and decomposed batch norm) on JPEGs of every
kind in one batch (classes identical, scores and logits close, the preprocessed input
bit-identical), its classify signature on tf.Example bytes, batch-row independence, Keras 3
model.export() and tf.saved_model.save exports of four architectures on photos, the TF2
tf.Module (half-pixel resize, asset vocabulary), and broken exports refused with the problem
named."""
import subprocess

import numpy as np
import pytest

from savedmodel_fixtures import (KERAS_MODELS, PIXELS_TENSOR, TF1_LOGITS_TENSOR, TF1_MODELS, TF2_MODULE,
                                 assert_bit_identical, assert_classes_equal, assert_tf_close, fetch_file, fixture,
                                 saved_models_root)

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="session")
def saved_models():
    return saved_models_root()


def run(model_run, *args, check=True):
    result = subprocess.run([str(model_run), *map(str, args)], capture_output=True, text=True, timeout=800)
    if check and result.returncode != 0:
        pytest.fail(f"model-run {' '.join(map(str, args))} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


def run_savedmodel(model_run, export_dir, out_dir, inputs, signature=None, fetches=(), extra=()):
    """inputs: [(name, path)] in batch order. Returns {file stem: array} of OUTDIR."""
    args = [export_dir]
    if signature is not None:
        args += ["--signature", signature]
    for name, path in inputs:
        args += ["--input", f"{name}={path}"]
    for tensor in fetches:
        args += ["--fetch", tensor]
    out_dir.mkdir(parents=True, exist_ok=True)
    run(model_run, *args, "--output", out_dir, *extra)
    return {path.stem: np.load(path) for path in out_dir.glob("*.npy")}


# --------------------------------------------------------------------------- TF1 Inception export

@pytest.mark.parametrize("name", TF1_MODELS)
def test_tf1_predict_images_every_jpeg_kind(model_run, saved_models, tmp_path, name):
    """predict_images on every JPEG kind and the photos, one batch: classes identical, scores and
    logits close, the map_fn output bit-identical to TensorFlow's on every row."""
    model = fixture(saved_models, name)
    files = model.meta["inputs"]
    outputs = run_savedmodel(model_run, model.export, tmp_path / "out",
                             [("images", model.input_path(f)) for f in files], signature="predict_images",
                             fetches=[PIXELS_TENSOR, TF1_LOGITS_TENSOR])
    expected = {"classes", "scores", fetch_file(PIXELS_TENSOR)[:-4], fetch_file(TF1_LOGITS_TENSOR)[:-4]}
    assert set(outputs) == expected, f"output files {sorted(outputs)}, expected {sorted(expected)}"
    assert_bit_identical(outputs[fetch_file(PIXELS_TENSOR)[:-4]], model.ref("pixels.npy"),
                         f"{name}: preprocessed input ({PIXELS_TENSOR})", labels=files)
    assert_tf_close(outputs[fetch_file(TF1_LOGITS_TENSOR)[:-4]], model.ref("logits.npy"), f"{name}: logits")
    assert_classes_equal(outputs["classes"], model.ref("classes.npy"), f"{name}: classes", labels=files)
    assert_tf_close(outputs["scores"], model.ref("scores.npy"), f"{name}: scores")


@pytest.mark.parametrize("kind", ["yuv420_640x480", "yuv444_500x375", "progressive420_800x600", "grayscale_400x300",
                                  "cmyk_450x300", "large_4032x3024", "tiny_17x11"])
def test_tf1_single_jpeg_kind(model_run, saved_models, tmp_path, kind):
    """One JPEG of each main kind alone (batch 1): the preprocessed input bit-identical, top-5 classes
    identical, so a failure names the kind."""
    model = fixture(saved_models, "inception_tf1")
    file = f"{kind}.jpg"
    row = model.jpeg_rows()[file]
    outputs = run_savedmodel(model_run, model.export, tmp_path / "out", [("images", model.input_path(file))],
                             signature="predict_images", fetches=[PIXELS_TENSOR])
    assert_bit_identical(outputs[fetch_file(PIXELS_TENSOR)[:-4]], model.ref("pixels.npy")[row:row + 1],
                         f"preprocessed {file}", labels=[file])
    assert_classes_equal(outputs["classes"], model.ref("classes.npy")[row:row + 1], f"classes of {file}")
    assert_tf_close(outputs["scores"], model.ref("scores.npy")[row:row + 1], f"scores of {file}")


def test_tf1_batch_rows_are_independent(model_run, saved_models, tmp_path):
    """Different sizes in one batch, in another order: each row equals TensorFlow's answer for that
    JPEG alone."""
    model = fixture(saved_models, "inception_tf1")
    files = ["large_4032x3024.jpg", "tiny_17x11.jpg", "cmyk_450x300.jpg", "photo_Wood.jpg", "grayscale_400x300.jpg"]
    rows = [model.jpeg_rows()[f] for f in files]
    outputs = run_savedmodel(model_run, model.export, tmp_path / "out",
                             [("images", model.input_path(f)) for f in files], signature="predict_images",
                             fetches=[TF1_LOGITS_TENSOR])
    assert_classes_equal(outputs["classes"], model.ref("classes.npy")[rows], "classes", labels=files)
    assert_tf_close(outputs["scores"], model.ref("scores.npy")[rows], "scores")
    assert_tf_close(outputs[fetch_file(TF1_LOGITS_TENSOR)[:-4]], model.ref("logits.npy")[rows], "logits")


@pytest.mark.parametrize("signature", ["serving_default", None])
def test_tf1_classify_signature_on_tf_examples(model_run, saved_models, tmp_path, signature):
    """serving_default (tensorflow/serving/classify, the default signature): serialized tf.Example
    strings with image/encoded in, the same classes and scores as TensorFlow's."""
    model = fixture(saved_models, "inception_tf1")
    files = model.kind_files()
    examples = [model.input_path(f[:-4] + ".example") for f in files]
    rows = [model.jpeg_rows()[f] for f in files]
    outputs = run_savedmodel(model_run, model.export, tmp_path / "out", [("inputs", e) for e in examples],
                             signature=signature)
    assert set(outputs) == {"classes", "scores"}, sorted(outputs)
    assert_classes_equal(outputs["classes"], model.ref("classify_classes.npy")[rows], "classify classes",
                         labels=files)
    assert_tf_close(outputs["scores"], model.ref("classify_scores.npy")[rows], "classify scores")


def test_tf1_labels_keep_utf8_and_commas(saved_models):
    """The reference itself: class names with commas and non-ASCII characters do occur in the
    answers, so string handling is exercised (a guard on the fixture, not on the server)."""
    model = fixture(saved_models, "inception_tf1")
    labels = (model.reference_dir / "labels.txt").read_text(encoding="utf-8").splitlines()
    assert len(labels) == 1001 and labels[0] == "unused background"
    assert any("," in label for label in labels) and any("é" in label for label in labels)
    classes = model.ref("classes.npy")
    assert classes.shape == (len(model.meta["inputs"]), 5) and classes.dtype.kind == "S"
    assert all(c.decode("utf-8") in labels for c in classes.ravel())
    spread = model.meta["top1_spread_photos"]
    assert spread["distinct_top1"] >= 4, f"reference top-1 barely depends on the input: {spread}"


# --------------------------------------------------------------------------- Keras 3 exports

@pytest.mark.parametrize("name", KERAS_MODELS)
def test_keras_export_matches_tensorflow(model_run, saved_models, tmp_path, name):
    """Keras 3 model.export() / tf.saved_model.save on the photos (float NHWC input): logits close,
    top-1 identical."""
    model = fixture(saved_models, name)
    [(input_name, input_file)] = model.meta["inputs"].items()
    [(output_name, output_file)] = model.meta["outputs"].items()
    outputs = run_savedmodel(model_run, model.export, tmp_path / "out",
                             [(input_name, model.reference_dir / input_file)])
    assert set(outputs) == {output_name}, f"outputs {sorted(outputs)}, expected [{output_name!r}]"
    reference = model.ref(output_file)
    assert_tf_close(outputs[output_name], reference, f"{name}: {output_name}")
    np.testing.assert_array_equal(np.argmax(outputs[output_name], axis=1), np.argmax(reference, axis=1),
                                  err_msg=f"{name}: top-1 classes differ from TensorFlow's")


@pytest.mark.parametrize("arch", ["mobilenet_v2", "efficientnet_b0"])
def test_keras_export_serve_signature(model_run, saved_models, tmp_path, arch):
    """model.export() also writes the `serve` signature: same answers as serving_default."""
    model = fixture(saved_models, f"keras_{arch}_export")
    assert "serve" in model.signatures, sorted(model.signatures)
    [(input_name, input_file)] = model.meta["inputs"].items()
    [(output_name, output_file)] = model.meta["outputs"].items()
    x = model.ref(input_file)[:3]
    np.save(tmp_path / "x.npy", x)
    outputs = run_savedmodel(model_run, model.export, tmp_path / "out", [(input_name, tmp_path / "x.npy")],
                             signature="serve")
    assert_tf_close(outputs[output_name], model.ref(output_file)[:3], f"{arch} serve: {output_name}")


def test_keras_reference_depends_on_the_input(saved_models):
    """Guard on the fixtures: the photos do not all get the same top-1 class."""
    for name in KERAS_MODELS:
        spread = fixture(saved_models, name).meta["top1_spread_photos"]
        assert spread["distinct_top1"] >= 4, f"{name}: reference top-1 barely depends on the input: {spread}"


# --------------------------------------------------------------------------- TF2 tf.Module

def test_tf2_module_classify(model_run, saved_models, tmp_path):
    """JPEG strings in, While/TensorList map_fn with tf.image.resize (half-pixel), TopKV2 and a
    StaticHashTable from the asset vocabulary: classes identical, scores close."""
    model = fixture(saved_models, TF2_MODULE)
    files = model.meta["inputs"]
    outputs = run_savedmodel(model_run, model.export, tmp_path / "out",
                             [("images", model.input_path(f)) for f in files])
    assert set(outputs) == {"classes", "scores"}, sorted(outputs)
    assert_classes_equal(outputs["classes"], model.ref("classes.npy"), "classes", labels=files)
    assert_tf_close(outputs["scores"], model.ref("scores.npy"), "scores")


def test_tf2_module_preprocess_bit_identical(model_run, saved_models, tmp_path):
    """The `preprocess` signature returns the map_fn output: bit-identical on every JPEG kind."""
    model = fixture(saved_models, TF2_MODULE)
    files = model.meta["inputs"]
    outputs = run_savedmodel(model_run, model.export, tmp_path / "out",
                             [("images", model.input_path(f)) for f in files], signature="preprocess")
    assert set(outputs) == {"pixels"}, sorted(outputs)
    assert_bit_identical(outputs["pixels"], model.ref("pixels.npy"), "tf.Module preprocessed input", labels=files)


# --------------------------------------------------------------------------- broken exports

def expect_refusal(model_run, args, *fragments):
    result = run(model_run, *args, check=False)
    assert result.returncode != 0, f"expected a load error, got success:\n{result.stdout[-2000:]}"
    for fragment in fragments:
        assert fragment.lower() in result.stderr.lower(), f"{fragment!r} not in stderr:\n{result.stderr[-4000:]}"
    assert "Fatal error" not in result.stderr and "Backtrace" not in result.stderr, result.stderr[-4000:]
    return result.stderr


@pytest.mark.parametrize("name, fragments", [
    ("bad_checksum", ["checksum"]),
    ("bad_missing_shard", ["variables.data-00000-of-00001"]),
    ("bad_truncated_pb", ["saved_model.pb"]),
    ("bad_unsupported_op", ["RFFT", "ComplexAbs"]),
])
def test_broken_export_is_refused_naming_the_problem(model_run, saved_models, tmp_path, name, fragments):
    model = fixture(saved_models, name)
    if name == "bad_unsupported_op":
        inputs = ["--input", f"x={model.reference_dir / 'x.npy'}"]
    else:
        jpeg = saved_models / "jpegs" / "exact_299x299.jpg"
        inputs = ["--input", f"images={jpeg}"]
    expect_refusal(model_run, [model.export, *inputs, "--output", tmp_path / "out"], *fragments)


def test_broken_fixtures_are_refused_by_tensorflow_too(saved_models):
    """Guard on the fixtures: TensorFlow itself refused each broken copy when it was made."""
    for name in ("bad_checksum", "bad_missing_shard", "bad_truncated_pb"):
        meta = fixture(saved_models, name).meta
        assert meta["tensorflow_error"], f"{name}: TensorFlow loaded it: {meta}"
    assert "checksum" in fixture(saved_models, "bad_checksum").meta["tensorflow_error"].lower()
