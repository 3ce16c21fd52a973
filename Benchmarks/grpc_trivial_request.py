#!/usr/bin/env python3
"""The V2 inference request on models/trivial used by Benchmarks/grpc_vs_kserve.sh:
input "x" FP32 [1, 4] = [0, 1, 2, 3]; expected output "y" FP32 [1, 4] = [1, 3, 5, 7].
Runs in the kserve-bench venv (scripts/python-env.sh kserve-bench: grpcio, protobuf,
kserve's grpc_predict_v2_pb2, whose inference.GRPCInferenceService messages are
wire-identical to Triton's / tritonclient.grpc.service_pb2).

    grpc_trivial_request.py grpc-body FILE   # h2load -d body: gRPC frame (0, u32 BE length,
                                             # ModelInferRequest with raw_input_contents)
    grpc_trivial_request.py rest-body FILE   # h2load -d body: V2 JSON
    grpc_trivial_request.py check-grpc PORT  # one ModelInfer call with grpcio: status OK and
                                             # y == [1, 3, 5, 7], else exit 1; prints the
                                             # response's gRPC frame size (5 + message bytes)
    grpc_trivial_request.py check-rest PORT  # one POST /v2/models/trivial/infer: 200 and
                                             # y == [1, 3, 5, 7], else exit 1; prints the body size
"""
import json
import struct
import sys
import urllib.request

import numpy as np

MODEL = "trivial"
METHOD = "/inference.GRPCInferenceService/ModelInfer"
X = np.array([[0.0, 1.0, 2.0, 3.0]], dtype=np.float32)
Y = [1.0, 3.0, 5.0, 7.0]


def pb():
    from kserve.protocol.grpc import grpc_predict_v2_pb2
    return grpc_predict_v2_pb2


def infer_request():
    m = pb()
    request = m.ModelInferRequest(model_name=MODEL)
    tensor = request.inputs.add()
    tensor.name, tensor.datatype = "x", "FP32"
    tensor.shape.extend(X.shape)
    request.raw_input_contents.append(X.astype("<f4").tobytes())
    return request


def rest_body():
    return json.dumps({"inputs": [{"name": "x", "shape": list(X.shape), "datatype": "FP32",
                                   "data": X.flatten().tolist()}]}).encode()


def fail(message):
    print(f"grpc_trivial_request: {message}", file=sys.stderr)
    sys.exit(1)


def check_grpc(port):
    import grpc
    m = pb()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(METHOD, request_serializer=m.ModelInferRequest.SerializeToString,
                                   response_deserializer=m.ModelInferResponse.FromString)
        try:
            response, rpc = call.with_call(infer_request(), timeout=10)
        except grpc.RpcError as e:
            fail(f"ModelInfer on port {port}: grpc status {e.code()}: {e.details()}")
    if rpc.code() != grpc.StatusCode.OK:
        fail(f"ModelInfer on port {port}: grpc status {rpc.code()}")
    if len(response.outputs) != 1:
        fail(f"expected one output, got {response}")
    out = response.outputs[0]
    if response.raw_output_contents:
        y = np.frombuffer(response.raw_output_contents[0], dtype="<f4").tolist()
    else:
        y = list(out.contents.fp32_contents)
    if out.datatype != "FP32" or list(out.shape) != [1, 4] or y != Y:
        fail(f"unexpected ModelInfer response: {response}")
    print(5 + response.ByteSize())


def check_rest(port):
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v2/models/{MODEL}/infer", data=rest_body(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            status, body = r.status, r.read()
    except Exception as e:  # HTTPError, URLError
        fail(f"POST /v2/models/{MODEL}/infer on port {port}: {e}")
    try:
        out = json.loads(body)["outputs"][0]
        ok = status == 200 and out["datatype"] == "FP32" and out["shape"] == [1, 4] and out["data"] == Y
    except (ValueError, KeyError, IndexError, TypeError):
        ok = False
    if not ok:
        fail(f"unexpected V2 REST response (HTTP {status}): {body[:500]!r}")
    print(len(body))


def main():
    if len(sys.argv) != 3:
        fail(__doc__)
    command, arg = sys.argv[1:]
    if command == "grpc-body":
        message = infer_request().SerializeToString()
        with open(arg, "wb") as f:
            f.write(struct.pack(">BI", 0, len(message)) + message)
    elif command == "rest-body":
        with open(arg, "wb") as f:
            f.write(rest_body())
    elif command == "check-grpc":
        check_grpc(int(arg))
    elif command == "check-rest":
        check_rest(int(arg))
    else:
        fail(__doc__)


if __name__ == "__main__":
    main()
