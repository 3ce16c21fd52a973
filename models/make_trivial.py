"""Rebuilds models/trivial: the smallest useful model, for HTTP/serving-overhead
benchmarks (Benchmarks/http_vs_kserve_nginx.sh), where the model's own work must be
negligible next to request handling.

    $VENV_TEST/bin/python models/make_trivial.py

Writes models/trivial/1/model.onnx (opset 13): input "x" float32 [batch, 4], output
"y" float32 [batch, 4] = x * 2 + 1, as a Mul and an Add with scalar initializers.
For x = [[0, 1, 2, 3]] the output is [[1, 3, 5, 7]].
"""
import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = pathlib.Path(__file__).resolve().parent / "trivial"


def build():
    nodes = [
        helper.make_node("Mul", ["x", "scale"], ["scaled"]),
        helper.make_node("Add", ["scaled", "bias"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "trivial",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(np.array(2.0, dtype=np.float32), "scale"),
         numpy_helper.from_array(np.array(1.0, dtype=np.float32), "bias")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="make_trivial.py")
    # Pin the IR version so older onnxruntime builds (e.g. the TF venv's) load it too.
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def main():
    model = build()
    (ROOT / "1").mkdir(parents=True, exist_ok=True)
    path = ROOT / "1" / "model.onnx"
    onnx.save(model, path)
    try:  # Cross-check with onnxruntime when it is installed (the test venv has it).
        import onnxruntime as ort
    except ImportError:
        print(f"wrote {path}")
        return
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": np.array([[0.0, 1.0, 2.0, 3.0]], dtype=np.float32)})
    assert y.tolist() == [[1.0, 3.0, 5.0, 7.0]], y
    print(f"wrote {path}; onnxruntime: [[0, 1, 2, 3]] -> {y.tolist()}")


if __name__ == "__main__":
    main()
