"""model-server serving TensorFlow SavedModels (issue 13) over REST, against TensorFlow's own
answers recorded by Tests/Fixtures/make_savedmodels.py ($SAVED_MODELS):

- the classic TF1 Inception export as `--model_name inception --model_base_path <dir>`:
  TF Serving REST :predict with signature_name predict_images and {"b64": ...} instances (row
  and columnar forms; a batch of JPEGs of every kind and size in one request), :classify with
  tf.Example JSON, GET .../metadata with the export's SignatureDefMap, Open Inference Protocol
  V2 REST on serving_default with BYTES inputs (binary extension and JSON b64);
- the TF2 tf.Module (JPEG strings, asset vocabulary) over V1 and V2;
- Keras 3 exports with float inputs via V1 and V2, served from a model_config_list with
  model_platform "tensorflow";
- every layout the server reads: base path, config list, Triton repository (platform
  "tensorflow_savedmodel" and none), a bare KServe-style directory;
- broken exports dropped in as version 2: a load error naming the problem while version 1
  keeps answering.

gRPC (PredictionService with tensorflow-serving-api) is in test_savedmodel_grpc_tf.py."""
import base64
import json
import shutil
import struct

import numpy as np
import pytest

from savedmodel_fixtures import (KERAS_MODELS, TF2_MODULE, as_bytes_array, assert_classes_equal, assert_tf_close,
                                 copy_version, fixture, saved_models_root)
from server_fixtures import base_path_args, tf_status, wait_until

pytestmark = pytest.mark.timeout(900)

LOAD_TIMEOUT = 180  # s: a server loading several 100-MB SavedModels on a busy 2-core machine


@pytest.fixture(scope="module")
def saved_models():
    return saved_models_root()


@pytest.fixture(scope="module")
def inception(saved_models):
    return fixture(saved_models, "inception_tf1")


@pytest.fixture(scope="module")
def server(module_server_factory, tmp_path_factory, saved_models, inception):
    """inception (the TF1 export) from --model_base_path, version 1."""
    base = tmp_path_factory.mktemp("models") / "inception"
    copy_version(inception.export, base, 1)
    return module_server_factory.start(*base_path_args("inception", base), ready_timeout=LOAD_TIMEOUT)


def b64(data):
    return {"b64": base64.b64encode(data).decode()}


def ok_json(response):
    assert response.status_code == 200, f"{response.status_code}: {response.text[:1000]}"
    return response.json()


# --------------------------------------------------------------------------- TF Serving REST: predict

def test_predict_images_b64_instances_every_kind(server, inception):
    """signature_name predict_images, one request with every JPEG kind and size (12 MP included)."""
    files = inception.meta["inputs"]
    body = {"signature_name": "predict_images", "instances": [b64(inception.input_bytes(f)) for f in files]}
    predictions = ok_json(server.post("/v1/models/inception:predict", json=body))["predictions"]
    assert len(predictions) == len(files)
    assert all(set(row) == {"classes", "scores"} for row in predictions), predictions[0]
    classes = as_bytes_array([row["classes"] for row in predictions])
    scores = np.asarray([row["scores"] for row in predictions], dtype=np.float32)
    assert_classes_equal(classes, inception.ref("classes.npy"), "REST predict classes", labels=files)
    assert_tf_close(scores, inception.ref("scores.npy"), "REST predict scores")


def test_predict_images_columnar_inputs(server, inception):
    """The columnar form: {"inputs": {"images": [...]}} -> {"outputs": {"classes", "scores"}}."""
    files = ["large_4032x3024.jpg", "tiny_17x11.jpg", "progressive444_333x499.jpg"]
    rows = [inception.jpeg_rows()[f] for f in files]
    body = {"signature_name": "predict_images", "inputs": {"images": [b64(inception.input_bytes(f)) for f in files]}}
    outputs = ok_json(server.post("/v1/models/inception/versions/1:predict", json=body))["outputs"]
    assert set(outputs) == {"classes", "scores"}, outputs
    assert_classes_equal(as_bytes_array(outputs["classes"]), inception.ref("classes.npy")[rows], "classes",
                         labels=files)
    assert_tf_close(np.asarray(outputs["scores"], np.float32), inception.ref("scores.npy")[rows], "scores")


def test_predict_unknown_signature_is_an_error(server, inception):
    body = {"signature_name": "no_such_signature", "instances": [b64(inception.input_bytes("tiny_17x11.jpg"))]}
    response = server.post("/v1/models/inception:predict", json=body)
    assert response.status_code in (400, 404), response.text
    assert "no_such_signature" in response.text


def test_predict_default_signature_is_classify_on_examples(server, inception):
    """Without signature_name, :predict runs serving_default (the classify signature): its input
    is `inputs`, serialized tf.Example strings."""
    files = ["yuv420_640x480.jpg", "cmyk_450x300.jpg"]
    rows = [inception.jpeg_rows()[f] for f in files]
    body = {"instances": [b64(inception.input_bytes(f[:-4] + ".example")) for f in files]}
    predictions = ok_json(server.post("/v1/models/inception:predict", json=body))["predictions"]
    assert_classes_equal(as_bytes_array([p["classes"] for p in predictions]),
                         inception.ref("classify_classes.npy")[rows], "classes", labels=files)
    assert_tf_close(np.asarray([p["scores"] for p in predictions], np.float32),
                    inception.ref("classify_scores.npy")[rows], "scores")


# --------------------------------------------------------------------------- TF Serving REST: classify

def test_classify_tf_example_json(server, inception):
    """:classify with tf.Example JSON (bytes feature as {"b64": ...}): results are [label, score]
    pairs, TensorFlow's top 5 in order."""
    files = inception.kind_files()
    body = {"signature_name": "serving_default",
            "examples": [{"image/encoded": b64(inception.input_bytes(f))} for f in files]}
    results = ok_json(server.post("/v1/models/inception:classify", json=body))["results"]
    assert len(results) == len(files)
    rows = [inception.jpeg_rows()[f] for f in files]
    classes = as_bytes_array([[pair[0] for pair in result] for result in results])
    scores = np.asarray([[pair[1] for pair in result] for result in results], dtype=np.float32)
    assert_classes_equal(classes, inception.ref("classify_classes.npy")[rows], "classify classes", labels=files)
    assert_tf_close(scores, inception.ref("classify_scores.npy")[rows], "classify scores")


def test_classify_without_signature_name_uses_serving_default(server, inception):
    file = "photo_Garden.jpg"
    row = inception.jpeg_rows()[file]
    body = {"examples": [{"image/encoded": b64(inception.input_bytes(file))}]}
    [result] = ok_json(server.post("/v1/models/inception:classify", json=body))["results"]
    assert [pair[0] for pair in result] == [c.decode() for c in inception.ref("classify_classes.npy")[row]]


def test_classify_on_a_predict_signature_is_an_error(server, inception):
    body = {"signature_name": "predict_images",
            "examples": [{"image/encoded": b64(inception.input_bytes("tiny_17x11.jpg"))}]}
    response = server.post("/v1/models/inception:classify", json=body)
    assert response.status_code == 400, response.text


# --------------------------------------------------------------------------- metadata

# meta.json dtype (TensorFlow's DType name) -> DataType enum name
DATA_TYPES = {"float32": "DT_FLOAT", "string": "DT_STRING", "int64": "DT_INT64", "int32": "DT_INT32",
              "invalid": "DT_INVALID"}


def rest_tensor_info(info):
    shape = info.get("tensor_shape", {})
    dims = None if shape.get("unknown_rank") else [int(d["size"]) for d in shape.get("dim", [])]
    return {"name": info["name"], "dtype": info["dtype"], "shape": dims}


def test_metadata_signature_def_map_equals_the_exports(server, inception):
    """GET /v1/models/inception/metadata: every signature of saved_model.pb with its method name and
    tensor names, dtypes and shapes (as TF's loader reads them; TF Serving copies every entry, TF2
    exports' __saved_model_init_op included)."""
    document = ok_json(server.get("/v1/models/inception/metadata"))
    assert document["model_spec"]["name"] == "inception" and str(document["model_spec"]["version"]) == "1"
    served = document["metadata"]["signature_def"]["signature_def"]
    assert set(served) == set(inception.signatures), (sorted(served), sorted(inception.signatures))
    for key, expected in inception.signatures.items():
        entry = served[key]
        assert entry["method_name"] == expected["method_name"], key
        for part in ("inputs", "outputs"):
            ours = {alias: rest_tensor_info(info) for alias, info in entry.get(part, {}).items()}
            theirs = {alias: {"name": info["name"], "dtype": DATA_TYPES[info["dtype"]], "shape": info["shape"]}
                      for alias, info in expected[part].items()}
            assert ours == theirs, f"{key} {part}: {ours} != {theirs}"


def test_v2_metadata_reports_tensorflow(server):
    document = ok_json(server.get("/v2/models/inception"))
    assert "tensorflow" in document["platform"].lower(), document
    assert {t["name"]: t["datatype"] for t in document["inputs"]} == {"inputs": "BYTES"}, document
    assert {t["name"]: t["datatype"] for t in document["outputs"]} == {"classes": "BYTES", "scores": "FP32"}, document


# --------------------------------------------------------------------------- Open Inference Protocol V2: BYTES

def v2_bytes_binary_request(name, elements, outputs):
    """BYTES input in the binary tensor extension: each element a 4-byte little-endian length and
    its bytes; outputs requested as binary."""
    raw = b"".join(struct.pack("<I", len(e)) + e for e in elements)
    header = {"inputs": [{"name": name, "shape": [len(elements)], "datatype": "BYTES",
                          "parameters": {"binary_data_size": len(raw)}}],
              "outputs": [{"name": o, "parameters": {"binary_data": True}} for o in outputs]}
    head = json.dumps(header).encode()
    return head + raw, len(head)


def split_bytes(raw):
    values, offset = [], 0
    while offset < len(raw):
        (length,) = struct.unpack_from("<I", raw, offset)
        values.append(raw[offset + 4:offset + 4 + length])
        offset += 4 + length
    return values


def v2_parse(body, headers):
    """{name: array} of a V2 response, BYTES as numpy 'S' arrays (JSON strings or binary)."""
    length = headers.get("Inference-Header-Content-Length")
    length = int(length) if length is not None else len(body)
    document = json.loads(body[:length])
    offset, arrays = length, {}
    for output in document["outputs"]:
        size = (output.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            raw = body[offset:offset + size]
            offset += size
            if output["datatype"] == "BYTES":
                arrays[output["name"]] = np.array(split_bytes(raw), dtype=np.bytes_).reshape(output["shape"])
            else:
                assert output["datatype"] == "FP32", output
                arrays[output["name"]] = np.frombuffer(raw, dtype=np.float32).reshape(output["shape"])
        elif output["datatype"] == "BYTES":
            arrays[output["name"]] = as_bytes_array(output["data"]).reshape(output["shape"])
        else:
            arrays[output["name"]] = np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])
    assert offset == len(body), f"{len(body) - offset} unexplained bytes after the outputs"
    return document, arrays


def test_v2_infer_bytes_binary_tf_examples(server, inception):
    """V2 on serving_default (classify): tf.Example bytes as a BYTES tensor (binary extension)."""
    files = inception.kind_files()
    rows = [inception.jpeg_rows()[f] for f in files]
    body, json_length = v2_bytes_binary_request(
        "inputs", [inception.input_bytes(f[:-4] + ".example") for f in files], ["classes", "scores"])
    response = server.post("/v2/models/inception/infer", data=body,
                           headers={"Inference-Header-Content-Length": str(json_length),
                                    "Content-Type": "application/octet-stream"})
    assert response.status_code == 200, response.text[:1000]
    document, arrays = v2_parse(response.content, response.headers)
    assert document["model_name"] == "inception" and str(document["model_version"]) == "1"
    assert_classes_equal(arrays["classes"], inception.ref("classify_classes.npy")[rows], "V2 classes", labels=files)
    assert_tf_close(arrays["scores"], inception.ref("classify_scores.npy")[rows], "V2 scores")


def test_v2_infer_bytes_json_b64(server, inception):
    """V2 JSON with BYTES elements as {"b64": ...}; string outputs come back as JSON strings."""
    files = ["grayscale_400x300.jpg", "wide_optimized_1000x200.jpg"]
    rows = [inception.jpeg_rows()[f] for f in files]
    body = {"inputs": [{"name": "inputs", "shape": [len(files)], "datatype": "BYTES",
                        "data": [b64(inception.input_bytes(f[:-4] + ".example")) for f in files]}]}
    response = server.post("/v2/models/inception/infer", json=body)
    assert response.status_code == 200, response.text[:1000]
    _, arrays = v2_parse(response.content, response.headers)
    assert_classes_equal(arrays["classes"], inception.ref("classify_classes.npy")[rows], "V2 classes", labels=files)
    assert_tf_close(arrays["scores"], inception.ref("classify_scores.npy")[rows], "V2 scores")


# --------------------------------------------------------------------------- TF2 tf.Module

@pytest.fixture(scope="module")
def module_server(module_server_factory, tmp_path_factory, saved_models):
    base = tmp_path_factory.mktemp("models") / "jpeg_module"
    copy_version(fixture(saved_models, TF2_MODULE).export, base, 1)
    return module_server_factory.start(*base_path_args("jpeg_module", base), ready_timeout=LOAD_TIMEOUT)


def test_tf2_module_v2_batch_of_different_sizes(module_server, saved_models):
    """One V2 request with JPEGs of every kind and size (binary BYTES): TensorFlow's answers."""
    model = fixture(saved_models, TF2_MODULE)
    files = model.meta["inputs"]
    body, json_length = v2_bytes_binary_request("images", [model.input_bytes(f) for f in files],
                                                ["classes", "scores"])
    response = module_server.post("/v2/models/jpeg_module/infer", data=body,
                                  headers={"Inference-Header-Content-Length": str(json_length),
                                           "Content-Type": "application/octet-stream"})
    assert response.status_code == 200, response.text[:1000]
    _, arrays = v2_parse(response.content, response.headers)
    assert_classes_equal(arrays["classes"], model.ref("classes.npy"), "classes", labels=files)
    assert_tf_close(arrays["scores"], model.ref("scores.npy"), "scores")


def test_tf2_module_v1_predict_and_preprocess_signature(module_server, saved_models):
    model = fixture(saved_models, TF2_MODULE)
    files = model.kind_files()
    rows = [model.jpeg_rows()[f] for f in files]
    body = {"instances": [b64(model.input_bytes(f)) for f in files]}
    predictions = ok_json(module_server.post("/v1/models/jpeg_module:predict", json=body))["predictions"]
    assert_classes_equal(as_bytes_array([p["classes"] for p in predictions]), model.ref("classes.npy")[rows],
                         "classes", labels=files)
    assert_tf_close(np.asarray([p["scores"] for p in predictions], np.float32), model.ref("scores.npy")[rows],
                    "scores")
    body = {"signature_name": "preprocess", "instances": [b64(model.input_bytes("odd420_301x203.jpg"))]}
    [pixels] = ok_json(module_server.post("/v1/models/jpeg_module:predict", json=body))["predictions"]
    row = model.jpeg_rows()["odd420_301x203.jpg"]
    # JSON floats written with enough digits round-trip exactly to float32.
    np.testing.assert_array_equal(np.asarray(pixels, np.float32), model.ref("pixels.npy")[row])


# --------------------------------------------------------------------------- Keras exports: floats

KERAS_CONFIG_ENTRY = """  config {{
    name: "{name}"
    base_path: "{base}"
    model_platform: "tensorflow"
  }}
"""


@pytest.fixture(scope="module")
def keras_server(module_server_factory, tmp_path_factory, saved_models):
    """All Keras exports from one model_config_list with model_platform "tensorflow"."""
    root = tmp_path_factory.mktemp("keras")
    entries = []
    for name in KERAS_MODELS:
        copy_version(fixture(saved_models, name).export, root / name, 1)
        entries.append(KERAS_CONFIG_ENTRY.format(name=name, base=root / name))
    config = root / "models.config"
    config.write_text("model_config_list {\n" + "".join(entries) + "}\n")
    return module_server_factory.start("--model_config_file", config, ready_timeout=LOAD_TIMEOUT * 2)


@pytest.mark.parametrize("name", KERAS_MODELS)
def test_keras_v1_predict_floats(keras_server, saved_models, name):
    model = fixture(saved_models, name)
    [(input_name, input_file)] = model.meta["inputs"].items()
    [(output_name, output_file)] = model.meta["outputs"].items()
    x = model.ref(input_file)[:2]
    predictions = ok_json(keras_server.post(f"/v1/models/{name}:predict", json={"instances": x.tolist()}))
    y = np.asarray(predictions["predictions"], dtype=np.float32)
    assert_tf_close(y, model.ref(output_file)[:2], f"{name} V1 {output_name}")


@pytest.mark.parametrize("name", KERAS_MODELS)
def test_keras_v2_infer_binary_floats(keras_server, saved_models, name):
    """Every photo in one V2 request (binary FP32 in and out)."""
    from server_fixtures import v2_binary_request, v2_parse_response

    model = fixture(saved_models, name)
    [(input_name, input_file)] = model.meta["inputs"].items()
    [(output_name, output_file)] = model.meta["outputs"].items()
    x = model.ref(input_file)
    body, json_length = v2_binary_request([(input_name, x)],
                                          outputs=[{"name": output_name, "parameters": {"binary_data": True}}])
    response = keras_server.post(f"/v2/models/{name}/infer", data=body,
                                 headers={"Inference-Header-Content-Length": str(json_length),
                                          "Content-Type": "application/octet-stream"})
    assert response.status_code == 200, response.text[:1000]
    _, arrays = v2_parse_response(response.content, response.headers)
    reference = model.ref(output_file)
    assert_tf_close(arrays[output_name], reference, f"{name} V2 {output_name}")
    np.testing.assert_array_equal(np.argmax(arrays[output_name], axis=1), np.argmax(reference, axis=1))


def test_keras_metadata_platform_and_signatures(keras_server, saved_models):
    for name in KERAS_MODELS:
        model = fixture(saved_models, name)
        document = ok_json(keras_server.get(f"/v2/models/{name}"))
        assert "tensorflow" in document["platform"].lower(), document
        [(input_name, _)] = model.meta["inputs"].items()
        assert [t["name"] for t in document["inputs"]] == [input_name], document
        served = ok_json(keras_server.get(f"/v1/models/{name}/metadata"))["metadata"]["signature_def"]["signature_def"]
        assert set(served) == set(model.signatures), (name, sorted(served), sorted(model.signatures))


# --------------------------------------------------------------------------- layouts

def jpeg_module_answers(server, model_name, model):
    """V1 predict of two JPEGs on `model_name` equals the TF2 module's reference."""
    files = ["exact_299x299.jpg", "cmyk_450x300.jpg"]
    rows = [model.jpeg_rows()[f] for f in files]
    body = {"instances": [b64(model.input_bytes(f)) for f in files]}
    predictions = ok_json(server.post(f"/v1/models/{model_name}:predict", json=body))["predictions"]
    assert_classes_equal(as_bytes_array([p["classes"] for p in predictions]), model.ref("classes.npy")[rows],
                         "classes", labels=files)


@pytest.mark.parametrize("layout", ["triton-platform", "triton-no-config", "kserve-bare-directory"])
def test_layouts(server_factory, tmp_path, saved_models, layout):
    """A version directory holding saved_model.pb is a TensorFlow model in every layout; a bare
    directory (the SavedModel files directly in the base path) is served as version 1."""
    model = fixture(saved_models, TF2_MODULE)
    if layout.startswith("triton"):
        repository = tmp_path / "repository"
        copy_version(model.export, repository / "jpeg_module", 1)
        if layout == "triton-platform":
            (repository / "jpeg_module" / "config.pbtxt").write_text(
                'name: "jpeg_module"\nplatform: "tensorflow_savedmodel"\n')
        server = server_factory.start("--model_repository", repository, ready_timeout=LOAD_TIMEOUT)
    else:
        bare = tmp_path / "bare"
        shutil.copytree(model.export, bare)
        server = server_factory.start(*base_path_args("jpeg_module", bare), ready_timeout=LOAD_TIMEOUT)
    assert tf_status(server, "jpeg_module")["1"]["state"] == "AVAILABLE"
    assert "tensorflow" in ok_json(server.get("/v2/models/jpeg_module"))["platform"].lower()
    jpeg_module_answers(server, "jpeg_module", model)


# --------------------------------------------------------------------------- broken versions

@pytest.mark.parametrize("name, fragments", [
    ("bad_checksum", ["checksum"]),
    ("bad_missing_shard", ["variables.data-00000-of-00001"]),
    ("bad_truncated_pb", ["saved_model.pb"]),
    ("bad_unsupported_op", ["RFFT", "ComplexAbs"]),
])
def test_broken_version_is_reported_and_previous_keeps_serving(server_factory, tmp_path, saved_models, name,
                                                                fragments):
    model = fixture(saved_models, TF2_MODULE)
    base = tmp_path / "jpeg_module"
    copy_version(model.export, base, 1)
    server = server_factory.start(*base_path_args("jpeg_module", base), ready_timeout=LOAD_TIMEOUT)
    jpeg_module_answers(server, "jpeg_module", model)
    copy_version(fixture(saved_models, name).export, base, 2)

    def failed():
        status = tf_status(server, "jpeg_module")
        return status if "2" in status and status["2"]["status"]["error_code"] != "OK" else None
    status = wait_until(failed, LOAD_TIMEOUT, f"version 2 ({name})'s load error in GET /v1/models/jpeg_module")
    assert status["2"]["state"] == "END", status
    message = status["2"]["status"]["error_message"]
    for fragment in fragments:
        assert fragment.lower() in message.lower(), f"{fragment!r} not in {message!r}"
    assert status["1"]["state"] == "AVAILABLE", status
    jpeg_module_answers(server, "jpeg_module", model)
    assert server.process.poll() is None


# --------------------------------------------------------------------------- model-client --protocol tf-grpc

def test_model_client_tf_grpc_classic_call(server, inception):
    """The model-client Job's call: TF Serving PredictionService/Predict on predict_images with
    JPEG files as one DT_STRING batch; it prints TensorFlow's top-5 classes, best first, per
    image; an unknown signature is an error (exit 1) naming it."""
    import os
    import subprocess
    client = os.environ.get("MODEL_CLIENT")
    if not client:
        pytest.fail("MODEL_CLIENT is not set: path of the release model-client binary (run scripts/test.sh)")
    files = ["yuv420_640x480.jpg", "photo_Garden.jpg"]
    paths = [str(inception.input_path(f)) for f in files]
    result = subprocess.run([client, "--server", f"127.0.0.1:{server.grpc_port}", "--model", "inception",
                             "--protocol", "tf-grpc", "--signature", "predict_images", *paths],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    printed, current = {}, None
    for line in result.stdout.splitlines():
        if line.endswith(":") and line[:-1] in paths:
            current = line[:-1]
            printed[current] = []
        else:
            printed[current].append(line.rsplit(" ", 1)[0])
    expected = {path: [c.decode() for c in inception.ref("classes.npy")[inception.jpeg_rows()[f]]] for f, path in zip(files, paths)}
    assert printed == expected, result.stdout
    bad = subprocess.run([client, "--server", f"127.0.0.1:{server.grpc_port}", "--model", "inception",
                          "--protocol", "tf-grpc", "--signature", "no_such_signature", paths[0]],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "no_such_signature" in bad.stderr, bad.stderr
