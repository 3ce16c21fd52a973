#!/usr/bin/env python3
"""KServe Python model server serving models/trivial (y = x * 2 + 1) with onnxruntime:
the baseline of Benchmarks/http_vs_kserve_nginx.sh (V1 REST) and
Benchmarks/grpc_vs_kserve.sh (V2 gRPC). Written the way KServe's own custom model
examples are (a kserve.Model subclass, kserve.ModelServer().start([model])), with
KServe's defaults (one uvicorn worker on uvloop + httptools; the gRPC server, a
grpc.aio server on the same event loop, is on unless --enable_grpc false).

    $VENV_KSERVE_BENCH/bin/python Benchmarks/kserve_trivial_server.py \
        --model_name trivial --model_dir models/trivial/1 --http_port 8080 --grpc_port 8081

Every kserve.model_server flag applies (--workers, --enable_latency_logging,
--log_config_file, ...). V1: POST /v1/models/trivial:predict {"instances": [[0, 1, 2, 3]]}
-> {"predictions": [[1.0, 3.0, 5.0, 7.0]]}.
V2 (gRPC inference.GRPCInferenceService/ModelInfer on --grpc_port, or REST
/v2/models/trivial/infer): input "x" FP32 [1, 4] -> output "y" FP32 [1, 4]; for gRPC
raw_input_contents in, raw_output_contents out (KServe's rule: raw in, raw out).
"""
import argparse
import os
from typing import Dict, Optional, Union

import kserve
import numpy as np
import onnxruntime as ort
from kserve import InferOutput, InferRequest, InferResponse


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

    def predict(self, payload: Union[Dict, InferRequest],
                headers: Dict[str, str] = None) -> Union[Dict, InferResponse]:
        if isinstance(payload, InferRequest):  # V2: gRPC or REST /v2/.../infer
            x = payload.inputs[0].as_numpy()
            (y,) = self.session.run([self.output_name], {self.input_name: x})
            output = InferOutput(name=self.output_name, shape=list(y.shape), datatype="FP32")
            output.set_data_from_numpy(y, binary_data=payload.use_binary_outputs)
            # The V2 response id echoes the request's (absent: "").
            return InferResponse(response_id=payload.id or "", model_name=self.name, infer_outputs=[output],
                                 use_binary_outputs=payload.use_binary_outputs)
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
