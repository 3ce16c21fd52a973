"""TensorFlow's own graph preprocessing of JPEG strings: the reference for ImageCodec's
TensorFlow-exact mode (`ImagePreprocessing.tensorflow`, image-bench --tf-resize).

Runs under venv-tf (TensorFlow 2.15; `scripts/python-env.sh tf`), as a child process of
test_image_tensorflow.py, which runs in the test venv (Pillow makes the JPEGs there):

    python tf_image_reference.py JOB.json

JOB.json: {"cases": [{"jpegs": [PATH, ...], "config": CONFIG, "output": OUT.npy}, ...]}.
Each case is one batch: a 1-D string tensor of the files' bytes through `tf.map_fn` inside a
`tf.function` (graph mode, Grappler on, dynamic image shapes), the way the classic TF Serving
Inception export preprocesses its `images` input; with "session": true in the config, as a
TF1 graph instead (tf.Graph, a string placeholder, tf.map_fn, tf.compat.v1.Session: how
TF Serving's inception_saved_model.py builds and runs it); with "eager": true, eagerly, one
image at a time (no Grappler: every step runs literally, and central_crop, seeing static
shapes, computes its offsets with the fraction as a Python float). OUT.npy gets float32 [N, height, width, C];
a case TensorFlow rejects gets OUT.npy.error with the message instead.

CONFIG keys:
    width, height        the resize size
    channels [3]         DecodeJpeg channels (0, 1, 3)
    dct_method [""]      DecodeJpeg dct_method ("", "INTEGER_FAST", "INTEGER_ACCURATE")
    before [[]]          "convert": tf.image.convert_image_dtype(image, tf.float32);
                         or [[OP, VALUE], ...]: tf.cast to float32, then each OP (add, sub,
                         mul, div) with a float32 constant; [] leaves the uint8 image as is
    crop [None]          tf.image.central_crop fraction
    resize               "legacy": expand_dims, tf.compat.v1.image.resize_bilinear
                         (align_corners=False), squeeze: the TF1 export;
                         "half_pixel": tf.image.resize(image, size) (bilinear, no antialias:
                         ResizeBilinear with half_pixel_centers=True; float32 output even for
                         a uint8 image)
    after [[]]           [[OP, VALUE], ...] after the resize (tf.add/subtract/multiply/divide
                         with a Python float, e.g. [["sub", 0.5], ["mul", 2.0]])
"""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

OPS = {"add": tf.add, "sub": tf.subtract, "mul": tf.multiply, "div": tf.divide}


def preprocess_one(data, config):
    """The map_fn body: one JPEG string to a float32 [height, width, C] image."""
    image = tf.io.decode_jpeg(data, channels=config.get("channels", 3), dct_method=config.get("dct_method", ""))
    before = config.get("before", [])
    if before == "convert":
        image = tf.image.convert_image_dtype(image, dtype=tf.float32)
    elif before:
        image = tf.cast(image, tf.float32)
        for op, value in before:
            image = OPS[op](image, tf.constant(value, tf.float32))
    if config.get("crop") is not None:
        image = tf.image.central_crop(image, central_fraction=config["crop"])
    size = [config["height"], config["width"]]
    if config["resize"] == "legacy":
        image = tf.expand_dims(image, 0)
        image = tf.compat.v1.image.resize_bilinear(image, size, align_corners=False)
        image = tf.squeeze(image, [0])
    elif config["resize"] == "half_pixel":
        image = tf.image.resize(image, size, method=tf.image.ResizeMethod.BILINEAR)
    else:
        raise ValueError(f"unknown resize {config['resize']!r}")
    for op, value in config.get("after", []):
        image = OPS[op](image, value)
    return image


def batch_function(config):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def run(jpegs):
        return tf.map_fn(lambda data: preprocess_one(data, config), jpegs, fn_output_signature=tf.float32)
    return run


def session_function(config):
    graph = tf.Graph()
    with graph.as_default():
        jpegs = tf.compat.v1.placeholder(tf.string, [None], name="images")
        images = tf.map_fn(lambda data: preprocess_one(data, config), jpegs, fn_output_signature=tf.float32)
    session = tf.compat.v1.Session(graph=graph)

    def run(batch):
        return session.run(images, {jpegs: batch.numpy()})
    return run


def eager_function(config):
    def run(batch):
        return np.stack([preprocess_one(data, config).numpy() for data in batch])
    return run


def main(job_path):
    with open(job_path) as f:
        job = json.load(f)
    functions = {}
    for case in job["cases"]:
        key = json.dumps(case["config"], sort_keys=True)
        if key not in functions:
            config = case["config"]
            make = session_function if config.get("session") else eager_function if config.get("eager") else batch_function
            functions[key] = make(config)
        jpegs = []
        for path in case["jpegs"]:
            with open(path, "rb") as f:
                jpegs.append(f.read())
        try:
            result = np.asarray(functions[key](tf.constant(jpegs)))
        except tf.errors.OpError as error:
            with open(case["output"] + ".error", "w") as f:
                f.write(error.message)
            continue
        assert result.dtype == np.float32, result.dtype
        np.save(case["output"], result)


if __name__ == "__main__":
    main(sys.argv[1])
