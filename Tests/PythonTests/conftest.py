"""Shared fixtures for the end-to-end tests: paths set by scripts/test.sh."""
import os
import pathlib

import pytest

# The model-server fixtures (MODEL_SERVER, free ports, start/stop with exit-code checks).
from server_fixtures import model_server_binary, module_server_factory, server_factory  # noqa: F401


def _path(variable, hint):
    value = os.environ.get(variable)
    if not value:
        pytest.fail(f"{variable} is not set: {hint} (run scripts/test.sh)")
    return pathlib.Path(value)


@pytest.fixture(scope="session")
def model_run():
    path = _path("MODEL_RUN", "path of the release model-run binary")
    assert path.is_file(), f"{path} does not exist"
    return path


@pytest.fixture(scope="session")
def keras_models():
    path = _path("KERAS_MODELS", "directory with the Keras ONNX exports and onnxruntime references")
    for name in ("inception_v3", "resnet50", "mobilenet_v2"):
        assert (path / name / "meta.json").is_file(), f"{path / name} is incomplete"
    return path
