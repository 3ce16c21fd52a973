"""Open Inference Protocol V2 over gRPC (inference.GRPCInferenceService, driven by Triton's
tritonclient.grpc) on TensorFlow SavedModels (issue 13): serving_default with DT_STRING inputs
as BYTES (the TF2 module's JPEG strings; the TF1 Inception export's classify signature with
tf.Example bytes), string outputs as BYTES, Keras float inputs; model metadata. Answers equal
TensorFlow's, recorded by Tests/Fixtures/make_savedmodels.py ($SAVED_MODELS).

tritonclient.grpc and the KServe SDK cannot share a process, so conftest.py runs this module in
a child pytest (ISOLATED)."""
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc

from savedmodel_fixtures import (TF2_MODULE, assert_classes_equal, assert_tf_close, copy_version, fixture,
                                 saved_models_root)

pytestmark = pytest.mark.timeout(600)

LOAD_TIMEOUT = 180
KERAS = "keras_efficientnet_b0_save"


@pytest.fixture(scope="module")
def saved_models():
    return saved_models_root()


@pytest.fixture(scope="module")
def server(module_server_factory, tmp_path_factory, saved_models):
    """A Triton repository without config.pbtxt files: jpeg_module (TF2), inception (TF1), and a
    Keras export."""
    repository = tmp_path_factory.mktemp("repository")
    for model_name, source in (("jpeg_module", TF2_MODULE), ("inception", "inception_tf1"), (KERAS, KERAS)):
        copy_version(fixture(saved_models, source).export, repository / model_name, 1)
    return module_server_factory.start("--model_repository", repository, ready_timeout=LOAD_TIMEOUT)


@pytest.fixture
def client(server):
    result = triton_grpc.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    yield result
    result.close()


def bytes_input(name, elements):
    array = np.array(elements, dtype=np.object_)
    tensor = triton_grpc.InferInput(name, [len(elements)], "BYTES")
    tensor.set_data_from_numpy(array)
    return tensor


def as_bytes(array):
    return np.array([[bytes(v) for v in row] for row in array], dtype=np.bytes_)


def test_jpeg_module_bytes_batch_of_every_kind(client, saved_models):
    model = fixture(saved_models, TF2_MODULE)
    files = model.meta["inputs"]
    result = client.infer("jpeg_module", [bytes_input("images", [model.input_bytes(f) for f in files])],
                          outputs=[triton_grpc.InferRequestedOutput("classes"),
                                   triton_grpc.InferRequestedOutput("scores")], client_timeout=120)
    assert_classes_equal(as_bytes(result.as_numpy("classes")), model.ref("classes.npy"), "classes", labels=files)
    assert_tf_close(result.as_numpy("scores"), model.ref("scores.npy"), "scores")


def test_inception_classify_signature_bytes(client, saved_models):
    model = fixture(saved_models, "inception_tf1")
    files = model.kind_files()
    rows = [model.jpeg_rows()[f] for f in files]
    result = client.infer("inception", [bytes_input("inputs", [model.input_bytes(f[:-4] + ".example") for f in files])],
                          client_timeout=120)
    assert_classes_equal(as_bytes(result.as_numpy("classes")), model.ref("classify_classes.npy")[rows], "classes",
                         labels=files)
    assert_tf_close(result.as_numpy("scores"), model.ref("classify_scores.npy")[rows], "scores")


def test_keras_float_input(client, saved_models):
    model = fixture(saved_models, KERAS)
    [(input_name, input_file)] = model.meta["inputs"].items()
    [(output_name, output_file)] = model.meta["outputs"].items()
    x = model.ref(input_file)[:5]
    tensor = triton_grpc.InferInput(input_name, list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    result = client.infer(KERAS, [tensor], client_timeout=120)
    assert_tf_close(result.as_numpy(output_name), model.ref(output_file)[:5], f"{KERAS} {output_name}")


def test_metadata(client):
    metadata = client.get_model_metadata("jpeg_module")
    assert "tensorflow" in metadata.platform.lower(), metadata
    assert [(t.name, t.datatype) for t in metadata.inputs] == [("images", "BYTES")]
    assert sorted((t.name, t.datatype) for t in metadata.outputs) == [("classes", "BYTES"), ("scores", "FP32")]
