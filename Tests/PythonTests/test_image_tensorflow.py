"""ImageCodec's TensorFlow-exact mode (`ImagePreprocessing.tensorflow`, through the release
`image-bench --tf-resize ...`, $IMAGE_BENCH) against TensorFlow itself: the float32 tensors
must be bit-identical (np.array_equal), on JPEGs of every kind, in the TF1 export's legacy
and TF2's half-pixel resize, with and without central crop, with the classic export's steps
(convert_image_dtype before; x - 0.5, * 2 after) and with none (uint8 straight into the
resize, as tf.image.resize does).

TensorFlow runs in venv-tf ($VENV_TF_PYTHON, set by scripts/test.sh), Pillow here: this
module makes the JPEGs, then one child process (tf_image_reference.py) computes every
reference in graph mode (tf.function + tf.map_fn over a batch of JPEG strings, as the classic
export does; for some cases as a TF1 graph in a Session, as inception_saved_model.py
builds it). Real photographs: the JPEGs of Debian's mate-backgrounds package, fetched once
with `apt-get download` into $MODEL_SERVER_CACHE/jpeg-photos (as Benchmarks/jpeg_vs_pillow.py
--debian-photos does) and used as they are, not re-encoded.
"""
import glob
import io
import json
import os
import pathlib
import subprocess

import numpy as np
import pytest
from PIL import Image

HERE = pathlib.Path(__file__).resolve().parent
CACHE = pathlib.Path(os.environ.get("MODEL_SERVER_CACHE", os.path.expanduser("~/.cache/swift-model-server")))
PHOTO_PACKAGE = "mate-backgrounds"
PHOTO_GLOB = "usr/share/backgrounds/mate/nature/*.jpg"

# --------------------------------------------------------------------------- preprocessing modes

INCEPTION_STEPS = {"before": "convert", "crop": 0.875, "after": [["sub", 0.5], ["mul", 2.0]]}
MODES = {
    # The classic TF Serving Inception export (TF1 graph): legacy ResizeBilinear.
    "tf1_classic": {"width": 299, "height": 299, "resize": "legacy", **INCEPTION_STEPS},
    # The same, built and run as a TF1 graph in a Session (inception_saved_model.py's way).
    "tf1_session_classic": {"width": 299, "height": 299, "resize": "legacy", "session": True, **INCEPTION_STEPS},
    # The same steps with TF2's tf.image.resize (half-pixel centres).
    "tf2_classic": {"width": 299, "height": 299, "resize": "half_pixel", **INCEPTION_STEPS},
    # No float steps: the uint8 image straight into tf.image.resize (float32 out).
    "tf2_plain": {"width": 224, "height": 224, "resize": "half_pixel"},
    # Legacy resize of the uint8 image after a central crop.
    "tf1_plain_crop": {"width": 224, "height": 224, "resize": "legacy", "crop": 0.875},
}
EXTRA_MODES = {
    "tf2_classic_nocrop": {"width": 299, "height": 299, "resize": "half_pixel", "before": "convert",
                           "after": [["sub", 0.5], ["mul", 2.0]]},
    "tf1_classic_nocrop": {"width": 299, "height": 299, "resize": "legacy", "before": "convert",
                           "after": [["sub", 0.5], ["mul", 2.0]]},
    "accurate_dct": {"width": 299, "height": 299, "resize": "legacy", "dct_method": "INTEGER_ACCURATE",
                     **INCEPTION_STEPS},
    "gray_out": {"width": 96, "height": 80, "resize": "half_pixel", "channels": 1, "before": "convert",
                 "crop": 0.875, "after": [["sub", 0.5], ["mul", 2.0]]},
    "channels0": {"width": 150, "height": 120, "resize": "legacy", "channels": 0,
                  "before": [["div", 127.5]], "after": [["sub", 1.0]]},
    # Chains Grappler folds: divisions become reciprocal multiplications, runs of
    # additions/subtractions and of multiplications become one operation.
    "folded_chains": {"width": 200, "height": 180, "resize": "legacy", "crop": 0.6,
                      "before": [["sub", 123.68], ["sub", 0.5], ["div", 58.4], ["mul", 1.3]],
                      "after": [["add", 0.25], ["sub", 1.7], ["div", 3.0], ["div", 0.7], ["mul", 1.1]]},
    # The same eagerly: steps literally, crop offsets from the float64 fraction.
    "eager_chains": {"width": 200, "height": 180, "resize": "legacy", "crop": 0.6, "eager": True,
                     "before": [["sub", 123.68], ["sub", 0.5], ["div", 58.4], ["mul", 1.3]],
                     "after": [["add", 0.25], ["sub", 1.7], ["div", 3.0], ["div", 0.7], ["mul", 1.1]]},
    "caffe_like": {"width": 331, "height": 257, "resize": "half_pixel",
                   "before": [["sub", 123.68], ["mul", 0.017]], "crop": 0.5, "after": [["add", 0.25], ["div", 3.0]]},
}


def float32_text(value):
    """The float32 constant as image-bench reads it back (shortest repr round-trips)."""
    return repr(float(np.float32(value)))


def bench_steps(ops):
    return ",".join(f"{op}:{float32_text(value)}" for op, value in ops) or "none"


def bench_args(config):
    args = ["--width", str(config["width"]), "--height", str(config["height"]),
            "--channels", str(config.get("channels", 3))]
    args += ["--tf-resize", {"legacy": "legacy", "half_pixel": "half-pixel"}[config["resize"]]]
    args += ["--tf-dct", "accurate" if config.get("dct_method") == "INTEGER_ACCURATE" else "fast"]
    before = config.get("before", [])
    # convert_image_dtype(uint8 -> float32) is a multiplication by float32(1 / 255).
    args += ["--tf-before", bench_steps([["mul", 1 / 255]] if before == "convert" else before)]
    args += ["--tf-after", bench_steps(config.get("after", []))]
    if config.get("crop") is not None:
        # In a graph with dynamic image shapes central_crop multiplies by the fraction as a
        # float32 constant cast to float64; eagerly (static shapes) by the Python float
        # (0.875 is exact either way).
        crop = float(config["crop"])
        args += ["--tf-crop", repr(crop) if config.get("eager") else float32_text(crop)]
    if config.get("eager"):
        args += ["--tf-literal"]  # no Grappler: every step runs as written
    return args


# --------------------------------------------------------------------------- JPEGs


def synthetic(width, height, seed=0, noise=8.0):
    """Smooth colour fields, hard edges and noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = x / width, y / height
    image = np.stack([
        128 + 110 * np.sin(2 * np.pi * (3 * u + v)),
        128 + 100 * np.cos(2 * np.pi * (4 * v - u)),
        255 * ((x // 16 + y // 16) % 2),
    ], axis=-1)
    image += rng.normal(0, noise, image.shape)
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


def encode(image, **options):
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=options.pop("quality", 90), **options)
    return buffer.getvalue()


def without_adobe_marker(data):
    """The JPEG minus its APP14 "Adobe" segments: libjpeg then takes 4 components as plain
    (not inverted) CMYK, and TF converts with (255 - k) * (255 - c) / 255."""
    out, i = bytearray(data[:2]), 2
    while i < len(data):
        assert data[i] == 0xFF, i
        marker = data[i + 1]
        if marker == 0xDA:
            out += data[i:]
            break
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if not (marker == 0xEE and data[i + 4:i + 9] == b"Adobe"):
            out += data[i:i + 2 + length]
        i += 2 + length
    assert b"Adobe" not in bytes(out[:200])
    return bytes(out)


def synthetic_jpegs():
    """name -> JPEG bytes, one of each kind (Pillow's libjpeg-turbo encoder)."""
    base = synthetic(157, 123)
    cmyk = encode(base.convert("CMYK"))
    return {
        "420": encode(base),
        "444": encode(base, subsampling=0),
        "422": encode(base, subsampling=1),
        "progressive": encode(base, progressive=True),
        "progressive_444": encode(synthetic(301, 199, seed=1), progressive=True, subsampling=0, quality=95),
        "gray": encode(base.convert("L")),
        "cmyk": cmyk,
        "cmyk_no_adobe": without_adobe_marker(cmyk),
        "odd_420": encode(synthetic(333, 211, seed=2), quality=75),
        "small": encode(synthetic(37, 29, seed=3)),  # upscaled to every target size
        "tiny": encode(synthetic(2, 3, seed=4)),
        "one_pixel": encode(synthetic(1, 1, seed=5)),
        "wide": encode(synthetic(1000, 41, seed=6)),
        "tall_gray": encode(synthetic(45, 700, seed=7).convert("L")),
        "q100_444": encode(synthetic(250, 250, seed=8), quality=100, subsampling=0),
    }


def debian_photos():
    """The photographs of Debian's mate-backgrounds package (fetched once), as they are."""
    directory = CACHE / "jpeg-photos"
    unpacked = directory / PHOTO_PACKAGE
    if not unpacked.is_dir():
        directory.mkdir(parents=True, exist_ok=True)
        download = ["apt-get", "download", PHOTO_PACKAGE]
        if subprocess.run(download, cwd=directory, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
            result = subprocess.run(download, cwd=directory, capture_output=True, text=True)
            assert result.returncode == 0, f"apt-get download {PHOTO_PACKAGE} failed: {result.stderr}"
        deb, = glob.glob(str(directory / f"{PHOTO_PACKAGE}_*.deb"))
        partial = directory / f"{PHOTO_PACKAGE}.partial"
        subprocess.run(["dpkg-deb", "-x", deb, str(partial)], check=True)
        os.rename(partial, unpacked)
        os.remove(deb)
    photos = sorted(glob.glob(str(unpacked / PHOTO_GLOB)))
    assert len(photos) >= 10, photos
    return {"photo_" + pathlib.Path(p).stem: pathlib.Path(p).read_bytes() for p in photos}


def large_jpegs():
    """4032 x 3024 (12.2 MP) JPEGs of a Debian photo upscaled: baseline 4:2:0 quality 92,
    and progressive 4:2:2 quality 85."""
    photo = Image.open(io.BytesIO(debian_photos()["photo_Wood"])).convert("RGB").resize((4032, 3024), Image.BICUBIC)
    return {"large": encode(photo, quality=92),
            "large_progressive": encode(photo, quality=85, progressive=True, subsampling=1)}


# --------------------------------------------------------------------------- cases

SYNTHETIC_KINDS = [
    "420", "444", "422", "progressive", "progressive_444", "gray", "cmyk", "cmyk_no_adobe", "odd_420", "small",
    "tiny", "one_pixel", "wide", "tall_gray", "q100_444"]
PHOTO_NAMES = ["Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird", "RainDrops", "Storm",
               "TwoWings", "Wood", "YellowFlower"]
KINDS = SYNTHETIC_KINDS + ["photo_" + name for name in PHOTO_NAMES] + ["large", "large_progressive"]

CASES = {}  # id -> (list of JPEG names, config)
for kind in KINDS:
    for mode, config in MODES.items():
        CASES[f"{mode}-{kind}"] = ([kind], config)
for mode, config in EXTRA_MODES.items():
    kinds = ["420", "444", "progressive", "small", "photo_Storm", "photo_FreshFlower", "large"]
    if config.get("channels", 3) != 0:
        kinds += ["gray"]  # channels=0 gives a gray JPEG's one channel in TF, three here
    if config.get("channels", 3) != 1:
        kinds += ["cmyk"]
    for kind in kinds:
        CASES[f"{mode}-{kind}"] = ([kind], config)
# One batch of mixed sizes and kinds through one decoder, against tf.map_fn over the batch.
BATCH = ["photo_Garden", "small", "cmyk", "gray", "large", "odd_420", "photo_GreenMeadow", "tiny"]
for mode, config in MODES.items():
    CASES[f"batch-{mode}"] = (BATCH, config)


@pytest.fixture(scope="session")
def image_bench():
    value = os.environ.get("IMAGE_BENCH")
    if not value:
        pytest.fail("IMAGE_BENCH is not set: path of the release image-bench binary (run scripts/test.sh)")
    path = pathlib.Path(value)
    assert path.is_file(), f"{path} does not exist"
    return path


@pytest.fixture(scope="session")
def jpeg_files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tf-jpegs")
    jpegs = {**synthetic_jpegs(), **debian_photos(), **large_jpegs()}
    jpegs["truncated"] = jpegs["odd_420"][:len(jpegs["odd_420"]) * 2 // 3]
    paths = {}
    for name, data in jpegs.items():
        paths[name] = directory / f"{name}.jpg"
        paths[name].write_bytes(data)
    return paths


@pytest.fixture(scope="session")
def tf_python():
    value = os.environ.get("VENV_TF_PYTHON")
    if not value:
        pytest.fail("VENV_TF_PYTHON is not set: the python of venv-tf (scripts/python-env.sh tf; run scripts/test.sh)")
    assert os.access(value, os.X_OK), f"{value} is not executable"
    return value


def run_tensorflow(tf_python, directory, cases, jpeg_files):
    """{case id: float32 array or error text} from one TensorFlow child process."""
    job = {"cases": [{"jpegs": [str(jpeg_files[name]) for name in names], "config": config,
                      "output": str(directory / f"{case_id}.npy")} for case_id, (names, config) in cases.items()]}
    job_path = directory / "job.json"
    job_path.write_text(json.dumps(job))
    result = subprocess.run([tf_python, str(HERE / "tf_image_reference.py"), str(job_path)],
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, f"the TensorFlow reference failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    outputs = {}
    for case_id in cases:
        path = directory / f"{case_id}.npy"
        outputs[case_id] = np.load(path) if path.exists() else (directory / f"{case_id}.npy.error").read_text()
    return outputs


@pytest.fixture(scope="session")
def tf_reference(tf_python, jpeg_files, tmp_path_factory):
    return run_tensorflow(tf_python, tmp_path_factory.mktemp("tf-reference"), {**CASES, **REJECTED}, jpeg_files)


def run_bench(image_bench, files, config, output):
    command = [str(image_bench), *map(str, files), "--repeat", "1", "--output", str(output), *bench_args(config)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def describe_difference(ours, expected):
    unequal = ours != expected
    where = np.argwhere(unequal)
    first = tuple(where[0])
    return (f"{unequal.sum()} of {unequal.size} values differ (max |diff| "
            f"{np.abs(ours.astype(np.float64) - expected).max():.3g}); first at {first}: "
            f"ours {ours[first]!r}, TensorFlow {expected[first]!r}")


@pytest.mark.parametrize("case_id", list(CASES))
def test_bit_identical_to_tensorflow(image_bench, jpeg_files, tf_reference, tmp_path, case_id):
    names, config = CASES[case_id]
    expected = tf_reference[case_id]
    assert isinstance(expected, np.ndarray), f"TensorFlow rejected it: {expected}"
    result = run_bench(image_bench, [jpeg_files[name] for name in names], config, tmp_path / "ours.npy")
    assert result.returncode == 0, result.stderr
    ours = np.load(tmp_path / "ours.npy")
    assert ours.dtype == expected.dtype == np.float32
    assert ours.shape == expected.shape, (ours.shape, expected.shape)
    assert np.array_equal(ours, expected), describe_difference(ours, expected)


# --------------------------------------------------------------------------- rejections

REJECTED = {
    # TF: "Unsupported color conversion request" (libjpeg cannot make gray from CMYK).
    "reject-cmyk_to_gray": (["cmyk"], {**EXTRA_MODES["gray_out"]}),
    "reject-truncated": (["truncated"], MODES["tf1_classic"]),
}


@pytest.mark.parametrize("case_id, needle", [("reject-cmyk_to_gray", "CMYK"), ("reject-truncated", "truncated")])
def test_rejected_like_tensorflow(image_bench, jpeg_files, tf_reference, tmp_path, case_id, needle):
    names, config = REJECTED[case_id]
    assert isinstance(tf_reference[case_id], str), "TensorFlow decoded it"
    result = run_bench(image_bench, [jpeg_files[name] for name in names], config, tmp_path / "ours.npy")
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert needle in result.stderr, result.stderr


# --------------------------------------------------------------------------- sensitivity


def test_the_comparison_tells_the_modes_apart(image_bench, jpeg_files, tmp_path):
    """Bit equality means something only if near misses differ: legacy vs half-pixel
    centres, fast vs accurate DCT, the crop, and (x / 255 - 0.5) * 2 before and after the
    resize vs x * (2 / 255) - 1 after it (equal in real numbers, not in float32)."""
    def ours(config, name="photo_Storm"):
        path = tmp_path / "out.npy"
        result = run_bench(image_bench, [jpeg_files[name]], config, path)
        assert result.returncode == 0, result.stderr
        return np.load(path)

    classic = ours(MODES["tf1_classic"])
    assert not np.array_equal(classic, ours({**MODES["tf1_classic"], "resize": "half_pixel"}))
    assert not np.array_equal(classic, ours({**MODES["tf1_classic"], "dct_method": "INTEGER_ACCURATE"}))
    assert not np.array_equal(classic, ours({**MODES["tf1_classic"], "crop": None}))
    reordered = ours({**MODES["tf1_classic"], "before": [], "after": [["mul", 2 / 255], ["sub", 1.0]]})
    assert not np.array_equal(classic, reordered)
    assert np.abs(classic - reordered).max() < 1e-6
