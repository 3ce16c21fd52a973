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


def test_metadata_describes_the_top_k_outputs(server_factory, tmp_path):
    """With top_k configured, every metadata view lists the outputs a plain request returns
    (`classes` BYTES and `scores` FP32, [batch, k]) besides the model's own, and each may be
    requested by name."""
    server = start_digits(server_factory, tmp_path)
    advertised = [("logits", "FP32", [-1, 10]), ("classes", "BYTES", [-1, 3]), ("scores", "FP32", [-1, 3])]
    metadata = server.get("/v2/models/digits").json()
    assert [(t["name"], t["datatype"], t["shape"]) for t in metadata["outputs"]] == advertised
    config = server.get("/v2/models/digits/config").json()
    assert [(t["name"], t["data_type"], t["dims"]) for t in config["output"]] == \
        [("logits", "TYPE_FP32", [10]), ("classes", "TYPE_STRING", [3]), ("scores", "TYPE_FP32", [3])]
    signature = server.get("/v1/models/digits/metadata").json()["metadata"]["signature_def"]["signature_def"]
    outputs = signature["serving_default"]["outputs"]
    assert {name: value["dtype"] for name, value in outputs.items()} == \
        {"logits": "DT_FLOAT", "classes": "DT_STRING", "scores": "DT_FLOAT"}
    assert "classification" in server.get("/v2").json()["extensions"]

    x = np.load(DIGITS_SAMPLES / "digit_6.npy").astype(np.float32)
    plain = server.post("/v2/models/digits/infer", json=v2_json_request(x)).json()["outputs"]
    only = server.post("/v2/models/digits/infer", json=v2_json_request(x, outputs=[{"name": "scores"}, {"name": "classes"}]))
    assert only.status_code == 200, only.text
    assert [o["name"] for o in only.json()["outputs"]] == ["scores", "classes"]
    assert {o["name"]: o["data"] for o in only.json()["outputs"]} == {o["name"]: o["data"] for o in plain}
    assert only.json()["outputs"][1]["data"][0] == "6"
    unknown = server.post("/v2/models/digits/infer", json=v2_json_request(x, outputs=[{"name": "labels"}]))
    assert unknown.status_code == 400 and "classes, logits, scores" in unknown.json()["error"], unknown.text


def test_classification_of_another_output_uses_its_own_labels(server_factory, tmp_path):
    """The configured softmax and labels belong to the configured output only: the
    classification extension on another output ranks that output's own values."""
    from server_fixtures import make_model_dir, pair_bytes
    root = make_model_dir(tmp_path / "pair", {1: pair_bytes()})
    (root / "sum_labels.txt").write_text("zero\none\ntwo\n")
    (root / "config.pbtxt").write_text(
        'output { name: "sum" data_type: TYPE_FP32 dims: [ 3 ] label_filename: "sum_labels.txt" }\n'
        'parameters { key: "softmax" value { string_value: "true" } }\n')
    server = server_factory.start("--model_name", "pair", "--model_base_path", str(root))
    a, b = [1.0, 2.0, 3.0], [5.0, 1.0, 1.0]   # sum 6, 3, 4; diff -4, 1, 2
    body = {"inputs": [{"name": "a", "shape": [1, 3], "datatype": "FP32", "data": a},
                       {"name": "b", "shape": [1, 3], "datatype": "FP32", "data": b}],
            "outputs": [{"name": "diff", "parameters": {"classification": 2}},
                        {"name": "sum", "parameters": {"classification": 1}}]}
    response = server.post("/v2/models/pair/infer", json=body)
    assert response.status_code == 200, response.text
    diff, total = response.json()["outputs"]
    assert [entry.split(":") for entry in diff["data"]] == [["2.0", "2"], ["1.0", "1"]]
    score, index, label = total["data"][0].split(":")
    assert (index, label) == ("0", "zero")
    assert abs(float(score) - softmax(np.array([6.0, 3.0, 4.0]))[0]) < 1e-5
