#!/usr/bin/env python3
"""KServe Python model server classifying JPEGs with InceptionV3 (Pillow + onnxruntime):
the baseline of Benchmarks/inception_batching.sh. Written the way KServe's own custom
image-model examples are (a kserve.Model subclass whose preprocess decodes the b64
images and whose predict runs the model, kserve.ModelServer().start([model])), with
KServe's defaults (one uvicorn worker on uvloop + httptools, onnxruntime's default
intra-op thread pool: one thread per core).

    $VENV_KSERVE_BENCH/bin/python Benchmarks/kserve_inception_server.py \
        --model_name inception --model_dir ~/.cache/swift-model-server/models/inception_v3 \
        --http_port 8080 --grpc_port 8081

V1: POST /v1/models/inception:predict {"instances": [{"b64": "<base64 JPEG>"}, ...]}
-> {"predictions": [[1000 logits], ...]}. Each image: decoded with Pillow and converted
to RGB, central crop 0.875 (as tf.image.central_crop), resized to 299x299 with
BILINEAR, scaled to [-1, 1] (x / 127.5 - 1), NHWC float32; all instances of a request
run as one onnxruntime batch.
"""
import argparse
import base64
import io
import os
from typing import Dict, Optional

import kserve
import numpy as np
import onnxruntime as ort
from PIL import Image

SIZE = 299
CENTRAL_FRACTION = 0.875


def load_image(b64: str) -> np.ndarray:
    image = Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB")
    w, h = image.size
    # tf.image.central_crop: the same start on both sides, rounded down
    left = int((w - w * CENTRAL_FRACTION) / 2)
    top = int((h - h * CENTRAL_FRACTION) / 2)
    image = image.crop((left, top, w - left, h - top))
    image = image.resize((SIZE, SIZE), Image.BILINEAR)
    return np.asarray(image, dtype=np.float32) * (2.0 / 255.0) - 1.0


class InceptionModel(kserve.Model):
    def __init__(self, name: str, model_dir: str):
        super().__init__(name)
        self.model_dir = model_dir
        self.session: Optional[ort.InferenceSession] = None
        self.input_name = self.output_name = None

    def load(self) -> bool:
        path = os.path.join(self.model_dir, "model.onnx")
        self.session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.ready = True
        return self.ready

    # --workers N > 1 pickles the model into each uvicorn worker process; an
    # InferenceSession does not pickle, so each worker reopens the model.
    def __getstate__(self):
        state = self.__dict__.copy()
        state["session"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self.ready:
            self.load()

    def preprocess(self, payload: Dict, headers: Dict[str, str] = None) -> np.ndarray:
        return np.stack([load_image(instance["b64"]) for instance in payload["instances"]])

    def predict(self, batch: np.ndarray, headers: Dict[str, str] = None) -> Dict:
        (logits,) = self.session.run([self.output_name], {self.input_name: batch})
        return {"predictions": logits.tolist()}


def main():
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--model_dir", required=True, help="directory holding model.onnx")
    args, _ = parser.parse_known_args()
    model = InceptionModel(args.model_name, args.model_dir)
    model.load()
    kserve.ModelServer().start([model])


if __name__ == "__main__":
    main()
