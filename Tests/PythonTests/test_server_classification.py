"""Classes out: top-k with labels as TF Serving Inception-style `classes`/`scores`, and the
V2 classification extension, on the shipped digits model and its config.pbtxt."""
import shutil

import numpy as np

from server_fixtures import DIGITS_SAMPLES, digits_reference, v2_json_request


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def start_digits(server_factory, tmp_path):
    root = tmp_path / "digits"
    shutil.copytree(DIGITS_SAMPLES.parent, root)
    return server_factory.start("--model_name", "digits", "--model_base_path", str(root))


def test_v1_predict_answers_classes_and_scores(server_factory, tmp_path):
    server = start_digits(server_factory, tmp_path)
    batch = np.concatenate([np.load(DIGITS_SAMPLES / f"digit_{k}.npy") for k in range(10)]).astype(np.float32)
    response = server.post("/v1/models/digits:predict", json={"instances": batch.tolist()})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    probabilities = softmax(digits_reference(batch))
    for k, row in enumerate(predictions):
        assert row["classes"][0] == str(k)
        best = np.argsort(-probabilities[k])[:3]
        assert row["classes"] == [str(i) for i in best]
        np.testing.assert_allclose(row["scores"], probabilities[k][best], rtol=1e-4, atol=1e-6)


def test_v2_classification_extension(server_factory, tmp_path):
    server = start_digits(server_factory, tmp_path)
    x = np.load(DIGITS_SAMPLES / "digit_4.npy").astype(np.float32)
    request = v2_json_request(x, outputs=[{"name": "logits", "parameters": {"classification": 2}}])
    response = server.post("/v2/models/digits/infer", json=request)
    assert response.status_code == 200, response.text
    output = response.json()["outputs"][0]
    assert output["datatype"] == "BYTES" and output["shape"] == [1, 2]
    score, index, label = output["data"][0].split(":")
    assert index == "4" and label == "4"
    assert abs(float(score) - softmax(digits_reference(x))[0, 4]) < 1e-5
    # Asking for the raw output by name keeps it raw.
    raw = server.post("/v2/models/digits/infer", json=v2_json_request(x, outputs=[{"name": "logits"}])).json()
    np.testing.assert_allclose(np.asarray(raw["outputs"][0]["data"]).reshape(1, 10), digits_reference(x), atol=1e-4, rtol=1e-3)
    # A class count that is not a positive integer is refused, naming the value.
    for bad in (0, -1, 2.5, 1e300, "3", True):
        request = v2_json_request(x, outputs=[{"name": "logits", "parameters": {"classification": bad}}])
        response = server.post("/v2/models/digits/infer", json=request)
        assert response.status_code == 400, (bad, response.text)
        assert "classification" in response.json()["error"], response.text
