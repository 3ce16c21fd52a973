"""Shared fixtures for the end-to-end tests: paths set by scripts/test.sh.

Some test modules must run in a Python process of their own (ISOLATED below): the KServe
SDK (imported by the REST client tests) and tritonclient.grpc register the same protobuf
symbols (package `inference`) and cannot share a process, and the TF Serving client needs
TensorFlow's venv. In the main pytest run such a module is not imported: its tests are
collected by `python -m pytest --collect-only` in the module's interpreter, run there in
one child pytest (with these same fixtures) when the first of them is reached, and each
reports its own outcome from the child's JUnit XML. A test the child skipped fails here:
nothing is hidden. Running such a module directly (`pytest Tests/PythonTests/<module>`)
isolates it the same way; the child itself imports it normally.
"""
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree

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
    for name in ("inception_v3", "resnet50", "mobilenet_v2", "efficientnet_b0"):
        assert (path / name / "meta.json").is_file(), f"{path / name} is incomplete"
    return path


# --------------------------------------------------------------------------- isolated modules

CHILD_VARIABLE = "MODEL_SERVER_ISOLATED_CHILD"
COLLECT_TIMEOUT = 300  # s for the child's --collect-only
RUN_TIMEOUT = 2400  # s for the child's whole run


def _same_interpreter():
    return sys.executable


def _tf_interpreter():
    value = os.environ.get("VENV_TF_PYTHON")
    if not value:
        raise RuntimeError("VENV_TF_PYTHON is not set: the python of venv-tf (scripts/python-env.sh tf), "
                           "which has tensorflow-serving-api (run scripts/test.sh)")
    if not (os.path.isfile(value) and os.access(value, os.X_OK)):
        raise RuntimeError(f"VENV_TF_PYTHON={value} is not an executable file")
    return value


# module file name -> the interpreter its child pytest runs under
ISOLATED = {
    "test_server_grpc.py": _same_interpreter,  # tritonclient.grpc (conflicts with the KServe SDK)
    "test_server_grpc_tf.py": _tf_interpreter,  # tensorflow-serving-api under venv-tf
    "test_savedmodel_grpc_tf.py": _tf_interpreter,  # the same, on the TensorFlow SavedModel fixtures
    "test_savedmodel_grpc_v2.py": _same_interpreter,  # tritonclient.grpc, on the SavedModel fixtures
}


class IsolatedFailure(Exception):
    pass


def _child_env():
    return {**os.environ, CHILD_VARIABLE: "1", "PYTHONDONTWRITEBYTECODE": "1"}


class IsolatedModule(pytest.File):
    """A test module collected and run by a child pytest in another interpreter."""

    def _python(self):
        try:
            return ISOLATED[self.path.name]()
        except RuntimeError as error:
            raise self.CollectError(str(error)) from None

    def collect(self):
        self.python = self._python()
        self.outcomes = None
        command = [self.python, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", str(self.path)]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=COLLECT_TIMEOUT,
                                    cwd=self.config.rootpath, env=_child_env())
        except subprocess.TimeoutExpired:
            raise self.CollectError(f"collecting {self.path.name} under {self.python} took over {COLLECT_TIMEOUT} s")
        names = [line.split(".py::", 1)[1] for line in result.stdout.splitlines() if ".py::" in line]
        if result.returncode != 0 or not names:
            raise self.CollectError(f"collecting {self.path.name} under {self.python} failed "
                                    f"(exit {result.returncode}):\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}")
        for name in names:
            yield IsolatedItem.from_parent(self, name=name)

    def run_child(self):
        """Runs the selected tests of this module in one child pytest; {name: (outcome, text)}."""
        if self.outcomes is not None:
            return self.outcomes
        selected = [item.name for item in self.session.items if item.parent is self]
        workdir = pathlib.Path(tempfile.mkdtemp(prefix=f"isolated-{self.path.stem}-"))
        report = workdir / "junit.xml"
        log_path = workdir / "output.log"
        command = [self.python, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider", f"--junitxml={report}",
                   f"--basetemp={workdir / 'tmp'}", *[f"{self.path}::{name}" for name in selected]]
        self.outcomes = {}
        with open(log_path, "w") as log:
            try:
                process = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT,
                                         cwd=self.config.rootpath, env=_child_env())
                exit_text = f"exit {process.returncode}"
            except subprocess.TimeoutExpired:
                exit_text = f"killed after {RUN_TIMEOUT} s"
        output = log_path.read_text(errors="replace")
        self.child_summary = f"child pytest under {self.python} ({exit_text}); output tail:\n{output[-8000:]}"
        if report.is_file():
            for case in ElementTree.parse(report).getroot().iter("testcase"):
                classname, name = case.get("classname", ""), case.get("name", "")
                if not classname.endswith(self.path.stem):  # a test class: Class::name
                    name = f"{classname.rsplit('.', 1)[-1]}::{name}"
                texts, outcome = [], "passed"
                for child in case:
                    if child.tag in ("failure", "error"):
                        outcome = "failed"
                        texts.append(f"[{child.tag}] {child.get('message', '')}\n{child.text or ''}")
                    elif child.tag == "skipped" and outcome == "passed":
                        outcome = "skipped"
                        texts.append(f"[skipped] {child.get('message', '')}\n{child.text or ''}")
                self.outcomes[name] = (outcome, "\n".join(texts))
        if all(outcome == "passed" for outcome, _ in self.outcomes.values()) and len(self.outcomes) == len(selected):
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            self.child_summary += f"\n(child files kept in {workdir})"
        return self.outcomes


class IsolatedItem(pytest.Item):
    def runtest(self):
        outcomes = self.parent.run_child()
        if self.name not in outcomes:
            raise IsolatedFailure(f"{self.name}: no result in the child's report\n{self.parent.child_summary}")
        outcome, text = outcomes[self.name]
        if outcome == "skipped":
            raise IsolatedFailure(f"{self.name} was skipped in the isolated run (skips hide failures here):\n{text}")
        if outcome != "passed":
            raise IsolatedFailure(f"{self.name} failed in the isolated run under {self.parent.python}:\n{text}")

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, IsolatedFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, f"{self.path.name}::{self.name} (isolated)"


def pytest_pycollect_makemodule(module_path, parent):
    if os.environ.get(CHILD_VARIABLE) or module_path.name not in ISOLATED:
        return None
    return IsolatedModule.from_parent(parent, path=module_path)
