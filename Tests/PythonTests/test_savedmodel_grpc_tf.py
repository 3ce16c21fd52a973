"""model-server serving the classic TF1 Inception export (issue 13) to TF Serving's own client
(tensorflow-serving-api, with TensorFlow's make_tensor_proto / make_ndarray), against
TensorFlow's answers recorded by Tests/Fixtures/make_savedmodels.py ($SAVED_MODELS):

- the model-client Job's call: PredictionService.Predict, model_spec.signature_name =
  "predict_images", inputs["images"] = make_tensor_proto(JPEG bytes), classes and scores printed;
- a batch of JPEGs of every kind and size in one Predict;
- Classify with tf.Example inputs (serving_default);
- GetModelMetadata: the SignatureDefMap equal to the export's (saved_model.pb parsed with
  TensorFlow's own protos, which is what TF's loader and TF Serving read);
- Keras 3 exports with float tensors.
On the gRPC port and on the REST port (HTTP/2 prior knowledge).

Needs TensorFlow, so conftest.py runs this module in a child pytest under venv-tf's python
(VENV_TF_PYTHON, set by scripts/test.sh)."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.core.protobuf import saved_model_pb2  # noqa: E402
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, predict_pb2,  # noqa: E402
                                     prediction_service_pb2_grpc)

from grpc_helpers import address, grpc_address, rest_address  # noqa: E402,F401 (address: fixture)
from savedmodel_fixtures import (assert_classes_equal, assert_tf_close, copy_version, fixture,  # noqa: E402
                                 saved_models_root)
from server_fixtures import base_path_args  # noqa: E402

pytestmark = pytest.mark.timeout(600)

LOAD_TIMEOUT = 180
KERAS = ["keras_resnet50_save", "keras_mobilenet_v2_export"]


@pytest.fixture(scope="module")
def saved_models():
    return saved_models_root()


@pytest.fixture(scope="module")
def inception(saved_models):
    return fixture(saved_models, "inception_tf1")


@pytest.fixture(scope="module")
def server(module_server_factory, tmp_path_factory, saved_models, inception):
    """inception (TF1 export) plus two Keras exports, from a model_config_list."""
    root = tmp_path_factory.mktemp("models")
    entries = []
    for model_name, source in [("inception", "inception_tf1"), *[(k, k) for k in KERAS]]:
        copy_version(fixture(saved_models, source).export, root / model_name, 1)
        entries.append(f'  config {{\n    name: "{model_name}"\n    base_path: "{root / model_name}"\n'
                       f'    model_platform: "tensorflow"\n  }}\n')
    config = root / "models.config"
    config.write_text("model_config_list {\n" + "".join(entries) + "}\n")
    return module_server_factory.start("--model_config_file", config, ready_timeout=LOAD_TIMEOUT)


@pytest.fixture
def prediction(address):
    channel = grpc.insecure_channel(address)
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel)
    channel.close()


def classes_of(proto):
    return np.array(tf.make_ndarray(proto).tolist(), dtype=np.bytes_)


def test_inception_client_predict_images(server, address, inception):
    """The model-client Job's call, as tensorflow_serving/example/inception_client.py makes it."""
    file = "photo_Garden.jpg"
    row = inception.jpeg_rows()[file]
    data = inception.input_bytes(file)
    channel = grpc.insecure_channel(address)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "inception"
    request.model_spec.signature_name = "predict_images"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(data, shape=[1]))
    result = stub.Predict(request, 10.0)  # 10 secs timeout
    channel.close()
    print(result.outputs["classes"], result.outputs["scores"])

    assert set(result.outputs) == {"classes", "scores"}
    assert result.outputs["classes"].dtype == tf.string.as_datatype_enum
    assert result.outputs["scores"].dtype == tf.float32.as_datatype_enum
    assert [d.size for d in result.outputs["scores"].tensor_shape.dim] == [1, 5]
    assert_classes_equal(classes_of(result.outputs["classes"]), inception.ref("classes.npy")[row:row + 1],
                         "Predict classes", labels=[file])
    assert_tf_close(tf.make_ndarray(result.outputs["scores"]), inception.ref("scores.npy")[row:row + 1],
                    "Predict scores")
    assert result.model_spec.name == "inception" and result.model_spec.version.value == 1
    assert result.model_spec.signature_name == "predict_images"


def test_predict_batch_of_every_jpeg_kind(server, prediction, inception):
    files = inception.meta["inputs"]
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "inception"
    request.model_spec.signature_name = "predict_images"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto([inception.input_bytes(f) for f in files],
                                                           shape=[len(files)]))
    result = prediction.Predict(request, 120.0)
    assert_classes_equal(classes_of(result.outputs["classes"]), inception.ref("classes.npy"), "Predict classes",
                         labels=files)
    assert_tf_close(tf.make_ndarray(result.outputs["scores"]), inception.ref("scores.npy"), "Predict scores")


def test_predict_output_filter(server, prediction, inception):
    file = "cmyk_450x300.jpg"
    row = inception.jpeg_rows()[file]
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "inception"
    request.model_spec.signature_name = "predict_images"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(inception.input_bytes(file), shape=[1]))
    request.output_filter.append("classes")
    result = prediction.Predict(request, 30.0)
    assert set(result.outputs) == {"classes"}
    assert_classes_equal(classes_of(result.outputs["classes"]), inception.ref("classes.npy")[row:row + 1], "classes")


def test_classify_tf_examples(server, prediction, inception):
    files = inception.kind_files()
    rows = [inception.jpeg_rows()[f] for f in files]
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "inception"
    request.model_spec.signature_name = "serving_default"
    for file in files:
        example = request.input.example_list.examples.add()
        example.features.feature["image/encoded"].bytes_list.value.append(inception.input_bytes(file))
    result = prediction.Classify(request, 120.0)
    classifications = result.result.classifications
    assert len(classifications) == len(files)
    classes = np.array([[c.label.encode() for c in entry.classes] for entry in classifications], dtype=np.bytes_)
    scores = np.array([[c.score for c in entry.classes] for entry in classifications], dtype=np.float32)
    assert_classes_equal(classes, inception.ref("classify_classes.npy")[rows], "Classify classes", labels=files)
    assert_tf_close(scores, inception.ref("classify_scores.npy")[rows], "Classify scores")


def export_signature_defs(export_dir):
    model = saved_model_pb2.SavedModel()
    model.ParseFromString((export_dir / "saved_model.pb").read_bytes())
    [meta_graph] = [m for m in model.meta_graphs if list(m.meta_info_def.tags) == ["serve"]]
    return meta_graph.signature_def


@pytest.mark.parametrize("model_name, source", [("inception", "inception_tf1"), *[(k, k) for k in KERAS]])
def test_get_model_metadata_signature_def_map(server, prediction, saved_models, model_name, source):
    """GetModelMetadata's SignatureDefMap equals the export's signature_def map, entry for entry:
    TF Serving copies every entry of the loaded meta graph's signature_def map, TF2 exports'
    `__saved_model_init_op` included (servables/tensorflow/get_model_metadata_impl.cc)."""
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = model_name
    request.metadata_field.append("signature_def")
    response = prediction.GetModelMetadata(request, 30.0)
    assert response.model_spec.name == model_name and response.model_spec.version.value == 1
    any_value = response.metadata["signature_def"]
    assert any_value.type_url == "type.googleapis.com/tensorflow.serving.SignatureDefMap", any_value.type_url
    served = get_model_metadata_pb2.SignatureDefMap()
    assert any_value.Unpack(served)
    expected = export_signature_defs(fixture(saved_models, source).export)
    assert sorted(served.signature_def) == sorted(expected)
    for key in expected:
        assert served.signature_def[key] == expected[key], f"{key}:\n{served.signature_def[key]}\n!=\n{expected[key]}"


@pytest.mark.parametrize("name", KERAS)
def test_keras_predict_floats(server, prediction, saved_models, name):
    model = fixture(saved_models, name)
    [(input_name, input_file)] = model.meta["inputs"].items()
    [(output_name, output_file)] = model.meta["outputs"].items()
    x = model.ref(input_file)[:4]
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.inputs[input_name].CopyFrom(tf.make_tensor_proto(x))
    result = prediction.Predict(request, 120.0)
    assert set(result.outputs) == {output_name}
    assert result.model_spec.signature_name == "serving_default"
    assert_tf_close(tf.make_ndarray(result.outputs[output_name]), model.ref(output_file)[:4], f"{name} {output_name}")
