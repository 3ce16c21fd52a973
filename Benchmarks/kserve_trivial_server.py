#!/usr/bin/env python3
"""KServe Python model server serving models/trivial (y = x * 2 + 1) with onnxruntime:
the baseline of Benchmarks/http_vs_kserve_nginx.sh. Written the way KServe's own custom
model examples are (a kserve.Model subclass, kserve.ModelServer().start([model])), with
KServe's defaults (one uvicorn worker on uvloop + httptools).

    $VENV_KSERVE_BENCH/bin/python Benchmarks/kserve_trivial_server.py \
        --model_name trivial --model_dir models/trivial/1 --http_port 8080 --grpc_port 8081

Every kserve.model_server flag applies (--workers, --enable_latency_logging,
--log_config_file, ...). V1: POST /v1/models/trivial:predict {"instances": [[0, 1, 2, 3]]}
-> {"predictions": [[1.0, 3.0, 5.0, 7.0]]}.
"""
import argparse
import os
from typing import Dict, Optional

import kserve
import numpy as np
import onnxruntime as ort


class TrivialModel(kserve.Model):
    def __init__(self, name: str, model_dir: str):
        super().__init__(name)
        self.model_dir = model_dir
        self.session: Optional[ort.InferenceSession] = None
        self.input_name = self.output_name = None

    def load(self) -> bool:
        path = os.path.join(self.model_dir, "model.onnx")
        options = ort.SessionOptions()
        # One request at a time runs on the event loop; the model is 8 FLOPs, so no
        # intra-op thread pool (it would only add wake-ups).
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
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

    def predict(self, payload: Dict, headers: Dict[str, str] = None) -> Dict:
        x = np.asarray(payload["instances"], dtype=np.float32)
        (y,) = self.session.run([self.output_name], {self.input_name: x})
        return {"predictions": y.tolist()}


def main():
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--model_dir", required=True, help="directory holding model.onnx")
    args, _ = parser.parse_known_args()
    model = TrivialModel(args.model_name, args.model_dir)
    model.load()
    kserve.ModelServer().start([model])


if __name__ == "__main__":
    main()
