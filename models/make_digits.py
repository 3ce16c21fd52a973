"""Rebuilds models/digits: a small classifier of handwritten digits trained on the
8x8 images that scikit-learn ships (load_digits, 1,797 images, UCI data), exported to
ONNX with the engine's operators.

    $VENV_TEST/bin/python models/make_digits.py

Writes models/digits/1/model.onnx (input "image" float32 [N, 1, 8, 8] with pixels in
[0, 1]; output "logits" float32 [N, 10]), models/digits/labels.txt, and sample inputs
models/digits/samples/digit_<label>.npy taken from the held-out split, and the same images
as grayscale JPEGs (pixels 0..16 scaled to 0..255, enlarged 8x to 64x64 with nearest
neighbour) in models/digits/samples/digit_<label>.jpg.
"""
import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parent / "digits"


def main():
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)  # [n, 8, 8], pixels 0..16 -> 0..1
    y = digits.target
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    classifier = MLPClassifier(hidden_layer_sizes=(64,), max_iter=600, random_state=0)
    classifier.fit(x_train.reshape(len(x_train), -1), y_train)
    accuracy = classifier.score(x_test.reshape(len(x_test), -1), y_test)
    print(f"held-out accuracy: {accuracy:.3f}")
    assert accuracy > 0.95, accuracy

    w1, w2 = (w.astype(np.float32) for w in classifier.coefs_)
    b1, b2 = (b.astype(np.float32) for b in classifier.intercepts_)
    nodes = [
        helper.make_node("Flatten", ["image"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "w1", "b1"], ["hidden_pre"]),
        helper.make_node("Relu", ["hidden_pre"], ["hidden"]),
        helper.make_node("Gemm", ["hidden", "w2", "b2"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "digits",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(a, name) for a, name in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="make_digits.py")
    onnx.checker.check_model(model)
    (ROOT / "1").mkdir(parents=True, exist_ok=True)
    onnx.save(model, ROOT / "1" / "model.onnx")
    (ROOT / "labels.txt").write_text("".join(f"{d}\n" for d in range(10)))
    samples = ROOT / "samples"
    samples.mkdir(exist_ok=True)
    for label in range(10):
        index = int(np.flatnonzero(y_test == label)[0])
        np.save(samples / f"digit_{label}.npy", x_test[index].reshape(1, 1, 8, 8))
        pixels = np.clip(np.rint(x_test[index] * 255), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).resize((64, 64), Image.NEAREST).save(samples / f"digit_{label}.jpg", quality=95)


if __name__ == "__main__":
    main()
