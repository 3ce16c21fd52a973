"""A model file that cannot be loaded never takes the server down (issue 15).

A Triton repository holds the healthy `digits` beside `bad_split` (Split of a rank-0 input,
an 82-byte model) and `bad_concat` (Concat of two rank-0 inputs): both once ended the whole
process with SIGILL in the planner. At start-up and when the bad models are copied in while
the server runs (the next repository poll loads them), the server must stay up, `digits` must
keep answering correctly, and each bad model's status must carry its load error naming the
node, its operator and the problem.
"""
import time

import numpy as np
import pytest

from server_fixtures import (DIGITS_SAMPLES, assert_still_serving, digits_bytes, make_model_dir, tf_status,
                             v2_json_request, v2_output, wait_until)
from test_model_load_fuzz import onnx_seeds

pytestmark = pytest.mark.timeout(180)

BAD = {"bad_split": ("split_rank0", "Split"), "bad_concat": ("concat_rank0", "Concat")}


def write_bad_models(repository):
    seeds = onnx_seeds()
    for name, (seed, _) in BAD.items():
        make_model_dir(repository / name, {1: seeds[seed].SerializeToString()})


def load_error(server, name):
    """The load error of version 1 of `name` once the server reports one, else None."""
    response = server.get(f"/v1/models/{name}")
    if response.status_code != 200:
        return None
    for entry in response.json()["model_version_status"]:
        if entry["version"] == "1" and entry["status"]["error_code"] != "OK":
            return entry
    return None


def assert_bad_models_reported(server):
    for name, (_, op) in BAD.items():
        entry = wait_until(lambda: load_error(server, name), 30, f"{name}'s load error in GET /v1/models/{name}")
        message = entry["status"]["error_message"]
        assert f"({op})" in message and "scalar" in message, entry
        assert server.get(f"/v2/models/{name}/ready").status_code != 200
        response = server.post(f"/v2/models/{name}/infer", json={"inputs": []})
        assert 400 <= response.status_code < 500 or response.status_code == 503, response.text
    assert server.process.poll() is None, f"model-server died\n{server.describe()}"


def assert_digits_answers(server):
    """digits classifies digit 7 as 7 (whatever the server's overall readiness says: Triton
    reports a server with a failed model as not ready)."""
    x = np.load(DIGITS_SAMPLES / "digit_7.npy").astype(np.float32)
    response = server.post("/v2/models/digits/infer", json=v2_json_request(x))
    assert response.status_code == 200, response.text
    assert int(np.argmax(v2_output(response.json(), "logits"))) == 7


def wait_digits(server):
    wait_until(lambda: server.process.poll() is not None or server.get("/v2/models/digits/ready").status_code == 200,
               30, "digits ready")
    assert server.process.poll() is None, f"model-server died at start-up\n{server.describe()}"


def test_bad_models_at_startup(server_factory, tmp_path):
    repository = tmp_path / "repository"
    make_model_dir(repository / "digits", {1: digits_bytes()})
    write_bad_models(repository)
    # Not "ready" (a model failed, as Triton reports it): wait for digits instead.
    server = server_factory.start("--model_repository", repository, wait_ready=False)
    wait_digits(server)
    assert_bad_models_reported(server)
    assert_digits_answers(server)


def test_bad_models_hot_added(server_factory, tmp_path):
    repository = tmp_path / "repository"
    make_model_dir(repository / "digits", {1: digits_bytes()})
    server = server_factory.start("--model_repository", repository)
    assert_still_serving(server)
    write_bad_models(repository)
    assert_bad_models_reported(server)
    # Several more polls: the failed versions are not retried into a crash.
    time.sleep(3)
    assert server.process.poll() is None, f"model-server died\n{server.describe()}"
    assert_digits_answers(server)
    assert tf_status(server, "digits")["1"]["state"] == "AVAILABLE"
