"""Bounded fuzzing of model-server's REST surface with malformed and edge-case requests.

Requirement: bad input gets a clear error that names the problem (HTTP 4xx), never a crash,
a hang or a leak. One server (loopback only) serves `digits` (JPEG image input, labels,
top_k), `pair` (two inputs) and `trivial`. A deterministic corpus (fixed seeds) of
mutated V1/V2 requests, wrong datatypes, broken binary-extension framing, BYTES tensors
with bad length prefixes, random/truncated/patched JPEGs, odd paths and raw HTTP garbage
is sent on fresh connections; every answer must be a complete HTTP response, a 5xx is a
finding, and every error body must be JSON {"error": "<non-empty message>"}. After each
batch the process must be alive and /v2/health/live must answer 200 within 2 s. Then
concurrent clients disconnect mid-request (fds and in-flight requests must return to
their baseline), and 20 s of mixed bad traffic must not grow the RSS by more than 100 MB.

Everything is seeded and bounded: the whole module takes well under 60 s.
"""
import base64
import concurrent.futures
import dataclasses
import functools
import json
import os
import random
import shutil
import socket
import struct
import threading
import time

import numpy as np
import pytest

from server_fixtures import DIGITS_SAMPLES, HOST, RawReader, http_request_bytes, make_model_dir, pair_bytes

pytestmark = pytest.mark.timeout(240)

ROOT_MODELS = DIGITS_SAMPLES.parent.parent
SEED = 20240611
HANG_SECONDS = 10.0  # no complete response within this: a hang
LIVE_SECONDS = 5.0  # /v2/health/live must answer within this after every batch
BATCH = 48  # cases between liveness checks
CORPUS_BUDGET = 150.0  # s for the corpus test (about 3 s here; a bound against a crawl, not a speed test)
RSS_TRAFFIC_SECONDS = 20.0
RSS_LIMIT_MB = 100.0
MAX_MUTATED_BODY = 1 << 20
JSON_HEADERS = {"Content-Type": "application/json"}
JPEG_HEADERS = {"Content-Type": "image/jpeg"}

JPEG = (DIGITS_SAMPLES / "digit_3.jpg").read_bytes()
JPEG7 = (DIGITS_SAMPLES / "digit_7.jpg").read_bytes()
ROW7 = np.load(DIGITS_SAMPLES / "digit_7.npy").astype(np.float32)[0]  # [1, 8, 8]


def b64(data):
    return base64.b64encode(data).decode()


# --------------------------------------------------------------------------- JSON with raw tokens

class Raw(str):
    """A literal JSON (or not-quite-JSON) token, written as is."""


class Pairs(list):
    """A JSON object as [(key, value)] pairs: keys may repeat."""


def dumps(value):
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, Pairs):
        return "{" + ",".join(dumps(k) + ":" + dumps(v) for k, v in value) + "}"
    if isinstance(value, dict):
        return "{" + ",".join(dumps(k) + ":" + dumps(v) for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if value in (float("inf"), float("-inf")):
            return "Infinity" if value > 0 else "-Infinity"
    return json.dumps(value)


BAD_NUMBERS = [Raw("NaN"), Raw("Infinity"), Raw("-Infinity"), Raw("1e309"), Raw("-1e309"), Raw("1e-400"),
               10 ** 20, -10 ** 20, 2 ** 63, 2 ** 63 - 1, -2 ** 63, -2 ** 63 - 1, 2 ** 64, 2 ** 64 + 1, 2 ** 31,
               4294967296, -1, 0, Raw("-0"), 1.5, -1.5, 0.5, Raw("1" * 400), Raw("0." + "0" * 400 + "1"),
               Raw("0x10"), Raw("01"), Raw("1."), Raw(".5"), Raw("+1"), Raw("1e"), Raw("-"), Raw("1e99999999999"),
               3.4028235e38, 3.5e38, 1e-46, 255, 256, -129, 65536, 1e300]
BAD_STRINGS = ["", "x" * 100000, "\u0000", "\u00e9\u6f22\u5b57\U0001F389\u202e", "\ud800", Raw('"\\uZZZZ"'),
               Raw('"\\ud83d"'), Raw('"\\udc00\\ud800"'), Raw('"unterminated'), Raw('"\x01ctrl"'),
               Raw('"\\x41"'), Raw('"' + "\u00ff" * 10 + '"'), "../../etc/passwd", "%00", "FP32 ", "a" * 300]
SWAP_VALUES = [None, True, False, 0, -1, 1.5, "str", [], {}, [[]], [None], [True, 1], ["a", 1], {"b64": ""},
               {"b64": "AAAA"}, [{}], Raw("null"), Raw("[" * 30 + "]" * 30)]
SHAPES = [[], [0], [-1, 3], [1, -3], [1.5, 3], [Raw("NaN"), 3], ["1", 3], [None], [1] * 65, [2 ** 62, 2 ** 62],
          [2 ** 31, 2 ** 31, 2 ** 31], [10 ** 20, 3], [0, 0], [1, 0], [0, 3], [1, 3, 1], [3, 1], [1, 1, 8, 8, 1],
          [4294967297, 3], [2 ** 63 - 1], [-2 ** 63], [2 ** 63], Raw("[1,3"), {"0": 1}, "1,3", 3, [[1, 3]],
          [True, 3], [1e300, 3], [33, 1, 8, 8], [1000000, 4], [1, 2 ** 40], [65536, 65536, 65536, 65536]]
DATATYPES = ["FP32", "FP64", "FP16", "BF16", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32",
             "UINT64", "BOOL", "BYTES", "fp32", "FLOAT", "TYPE_FP32", "", "FP32\u0000", 5, None, ["FP32"]]
ELEMENT_SIZE = {"FP32": 4, "FP64": 8, "FP16": 2, "BF16": 2, "INT8": 1, "INT16": 2, "INT32": 4, "INT64": 8, "UINT8": 1,
                "UINT16": 2, "UINT32": 4, "UINT64": 8, "BOOL": 1}


def data_for(datatype, count, rng):
    """JSON data of the right kind for `datatype` (so a wrong datatype reaches the model check)."""
    if datatype == "BOOL":
        return [rng.random() < 0.5 for _ in range(count)]
    if datatype == "BYTES":
        return ["s%d" % i for i in range(count)]
    if datatype in ("FP32", "FP64", "FP16", "BF16"):
        return [round(rng.uniform(-2, 2), 3) for _ in range(count)]
    return [rng.randrange(0, 100) for _ in range(count)]


# --------------------------------------------------------------------------- cases

@dataclasses.dataclass
class Case:
    label: str
    method: str = "POST"
    path: str = "/"
    body: bytes = b""
    headers: dict = dataclasses.field(default_factory=dict)
    raw: bytes = None  # the whole request as is (no Host/Content-Length added)
    allow: tuple = ()  # extra statuses >= 500 that are acceptable for this case (documented reasons)

    def bytes(self):
        if self.raw is not None:
            return self.raw
        headers = {"Connection": "close", **self.headers}
        return http_request_bytes(self.method, self.path, self.body, headers)

    def reproducer(self, port, limit=1500):
        """A Python snippet that sends this request (cut at `limit` bytes when longer)."""
        data = self.bytes()
        shown = repr(data) if len(data) <= limit else repr(data[:limit]) + f"  # ... {len(data)} bytes in all"
        return (f"[{self.label}]\n      import socket; s = socket.create_connection((\"127.0.0.1\", {port})); "
                f"s.sendall({shown}); print(s.recv(65536))")


def json_case(label, path, document, headers=None, allow=()):
    body = (document if isinstance(document, (bytes, bytearray)) else dumps(document).encode("utf-8", "surrogatepass"))
    return Case(label, "POST", path, bytes(body), {"Content-Type": "application/json", **(headers or {})}, allow=allow)


def binary_input(name, shape, datatype, size):
    """A V2 input header entry whose data is `size` bytes of the binary extension."""
    return {"name": name, "shape": shape, "datatype": datatype, "parameters": {"binary_data_size": size}}


def base_requests():
    """(label, path, document) valid requests the mutations start from."""
    row = ROW7.tolist()
    return [
        ("v1-digits-instances", "/v1/models/digits:predict", {"instances": [row]}),
        ("v1-digits-columnar", "/v1/models/digits:predict",
         {"inputs": {"image": [row]}, "signature_name": "serving_default"}),
        ("v1-digits-b64", "/v1/models/digits:predict", {"instances": [{"b64": b64(JPEG)}]}),
        ("v1-digits-image-bytes", "/v1/models/digits/versions/1:predict",
         {"instances": [{"image_bytes": {"b64": b64(JPEG)}}]}),
        ("v1-pair-rows", "/v1/models/pair:predict", {"instances": [{"a": [1, 2, 3], "b": [4, 5, 6]}]}),
        ("v1-pair-columns", "/v1/models/pair:predict", {"inputs": {"a": [[1, 2, 3]], "b": [[4, 5, 6]]}}),
        ("v1-trivial", "/v1/models/trivial:predict", {"instances": [[0.0, 1.0, 2.0, 3.0]]}),
        ("v2-digits", "/v2/models/digits/infer",
         {"id": "r1", "inputs": [{"name": "image", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": row}],
          "outputs": [{"name": "logits", "parameters": {"classification": 3}}]}),
        ("v2-digits-bytes", "/v2/models/digits/infer",
         {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [{"b64": b64(JPEG)}]}]}),
        ("v2-pair", "/v2/models/pair/versions/1/infer",
         {"inputs": [{"name": "a", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]},
                     {"name": "b", "shape": [1, 3], "datatype": "FP32", "data": [[4, 5, 6]]}],
          "outputs": [{"name": "sum"}, {"name": "diff", "parameters": {"binary_data": False}}],
          "parameters": {"binary_data_output": False}}),
        ("v2-trivial", "/v2/models/trivial/infer",
         {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0, 1, 2, 3]}]}),
    ]


def positions(tree, prefix=()):
    """Every (container, key, path) in a JSON tree of dicts and lists."""
    out = []
    if isinstance(tree, dict):
        for key, value in tree.items():
            out.append((tree, key, prefix + (key,)))
            out.extend(positions(value, prefix + (key,)))
    elif isinstance(tree, list) and len(tree) <= 64:
        for index, value in enumerate(tree):
            out.append((tree, index, prefix + (index,)))
            out.extend(positions(value, prefix + (index,)))
    return out


def mutate(document, rng):
    """One random structural mutation of a deep copy of `document`; returns (description, tree)."""
    tree = json.loads(json.dumps(document))
    spots = positions(tree)
    if not spots:
        return "replace-root", rng.choice(SWAP_VALUES + BAD_STRINGS[:4] + BAD_NUMBERS[:6])
    container, key, where = rng.choice(spots)
    op = rng.choice(["swap", "number", "string", "delete", "duplicate", "nest", "empty", "grow", "shape",
                     "datatype", "rename", "ragged", "unknown-key", "classification"])
    value = container[key]
    if op == "swap":
        container[key] = rng.choice(SWAP_VALUES)
    elif op == "number":
        container[key] = rng.choice(BAD_NUMBERS)
    elif op == "string":
        container[key] = rng.choice(BAD_STRINGS)
    elif op == "delete":
        if isinstance(container, dict):
            del container[key]
        else:
            container.pop(key)
    elif op == "duplicate":
        if isinstance(container, dict):
            items = list(container.items())
            index = [k for k, _ in items].index(key)
            items.insert(index + rng.randrange(2), (key, rng.choice(SWAP_VALUES + [value])))
            pairs = Pairs(items)
            # Put the duplicate-key object back in place of `container`.
            if len(where) == 1:
                tree = pairs
            else:
                parent = tree
                for step in where[:-2]:
                    parent = parent[step]
                parent[where[-2]] = pairs
        else:
            container.insert(key, value)
    elif op == "nest":
        depth = rng.choice([2, 63, 64, 65, 200, 5000, 100000])
        opener, closer = rng.choice([("[", "]"), ('{"k":', "}")])
        container[key] = Raw(opener * depth + dumps(value) + closer * depth)
    elif op == "empty":
        container[key] = rng.choice([[], {}, "", Raw("[[]]")])
    elif op == "grow":
        factor = rng.choice([2, 33, 1000]) if len(dumps(value)) < 1000 else rng.choice([2, 33])
        container[key] = value * factor if isinstance(value, list) and value else [value] * factor
    elif op == "shape":
        target = find_key(tree, "shape", rng)
        if target is not None:
            target[0]["shape"] = rng.choice(SHAPES)
        else:
            container[key] = rng.choice(SHAPES)
    elif op == "datatype":
        target = find_key(tree, "datatype", rng)
        (target[0] if target else container)["datatype" if target else key] = rng.choice(DATATYPES)
    elif op == "rename":
        if isinstance(container, dict):
            container[rng.choice(["", "Name", key.upper(), key + " ", "\u0000", "x" * 5000])] = container.pop(key)
        else:
            container[key] = {"unexpected": value}
    elif op == "ragged":
        container[key] = [value, [value, value], 1]
    elif op == "unknown-key":
        (container if isinstance(container, dict) else tree if isinstance(tree, dict) else {})[
            rng.choice(["parameters", "outputs", "inputs", "id", "instances", "signature_name", "extra"])] = \
            rng.choice(SWAP_VALUES + BAD_NUMBERS[:6] + [{"binary_data_size": 5}, {"timeout": -1}])
    elif op == "classification":
        target = find_key(tree, "outputs", rng)
        classification = rng.choice(BAD_NUMBERS + SWAP_VALUES)
        outputs = [{"name": rng.choice(["logits", "sum", "y", "nope", ""]),
                    "parameters": {"classification": classification}}]
        (target[0] if target else tree if isinstance(tree, dict) else {})["outputs"] = outputs
    return f"{op}@{'/'.join(map(str, where))[:80]}", tree


def find_key(tree, name, rng):
    found = []

    def walk(node):
        if isinstance(node, dict):
            if name in node:
                found.append((node,))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node[:64]:
                walk(v)
    walk(tree)
    return rng.choice(found) if found else None


def mutation_cases(rng, count):
    cases = []
    bases = base_requests()
    for index in range(count):
        label, path, base = bases[index % len(bases)]
        while True:  # mutations that blow the body past MAX_MUTATED_BODY are drawn again
            steps, tree = [], base
            for _ in range(rng.choice([1, 1, 1, 2, 3])):
                description, tree = mutate(tree, rng)
                steps.append(description)
            body = dumps(tree).encode("utf-8", "surrogatepass")
            if len(body) <= MAX_MUTATED_BODY:
                break
        byte_op = rng.random()
        if byte_op < 0.08:
            body = body[:rng.randrange(len(body) + 1)]
            steps.append("truncated")
        elif byte_op < 0.14:
            at = rng.randrange(len(body) + 1)
            body = body[:at] + bytes([rng.randrange(256)]) + body[at:]
            steps.append("byte-inserted")
        cases.append(json_case(f"mutate:{label}:{'+'.join(steps)}", path, body))
    return cases


def datatype_cases(rng):
    """Every V2 JSON input with every datatype name (data of the matching kind), plus the
    binary extension with sizes consistent with the declared datatype."""
    cases = []
    models = {"pair": [("a", [1, 3]), ("b", [1, 3])], "trivial": [("x", [1, 4])], "digits": [("image", [1, 1, 8, 8])]}
    for model, inputs in models.items():
        for target, _ in inputs:
            for datatype in DATATYPES:
                tensors = []
                for name, shape in inputs:
                    count = int(np.prod(shape))
                    declared = datatype if name == target else "FP32"
                    known = isinstance(declared, str) and (declared in ELEMENT_SIZE or declared == "BYTES")
                    kind = declared if known else "FP32"
                    data = data_for(kind, count, rng)
                    tensors.append({"name": name, "shape": shape, "datatype": declared, "data": data})
                cases.append(json_case(f"datatype-json:{model}.{target}={datatype!r}", f"/v2/models/{model}/infer",
                                       {"inputs": tensors}))
                if isinstance(datatype, str) and datatype in ELEMENT_SIZE:
                    header = {"inputs": []}
                    blobs = []
                    for name, shape in inputs:
                        count = int(np.prod(shape))
                        size = count * (ELEMENT_SIZE[datatype] if name == target else 4)
                        header["inputs"].append(binary_input(name, shape, datatype if name == target else "FP32", size))
                        blobs.append(bytes(rng.randrange(256) for _ in range(size)))
                    head = json.dumps(header).encode()
                    headers = {"Inference-Header-Content-Length": str(len(head)),
                               "Content-Type": "application/octet-stream"}
                    cases.append(Case(f"datatype-binary:{model}.{target}={datatype}", "POST",
                                      f"/v2/models/{model}/infer", head + b"".join(blobs), headers))
    # V1: values of the wrong JSON kind for each input.
    for value in [["a", "b", "c"], [True, False, True], [{"b64": b64(b"xyz")}] * 3, [None] * 3, [[1], [2], [3]], "abc"]:
        cases.append(json_case(f"datatype-v1:pair.a={value!r:.40}", "/v1/models/pair:predict",
                               {"instances": [{"a": value, "b": [1, 2, 3]}]}))
        for model in ("trivial", "digits"):
            cases.append(json_case(f"datatype-v1:{model}={value!r:.40}", f"/v1/models/{model}:predict",
                                   {"instances": [value]}))
    return cases


def binary_case(label, model, header, blobs, header_length=None, extra_headers=None, trailing=b""):
    head = dumps(header).encode("utf-8", "surrogatepass")
    length = str(len(head)) if header_length is None else header_length
    headers = {"Content-Type": "application/octet-stream", **(extra_headers or {})}
    if length is not False:
        headers["Inference-Header-Content-Length"] = length
    return Case(label, "POST", f"/v2/models/{model}/infer", head + b"".join(blobs) + trailing, headers)


def binary_cases(rng):
    cases = []
    a = np.arange(3, dtype=np.float32).reshape(1, 3).tobytes()
    x = np.arange(4, dtype=np.float32).reshape(1, 4).tobytes()
    image = ROW7.reshape(1, 1, 8, 8).tobytes()

    def pair_header(size_a=12, size_b=12, shape=(1, 3)):
        return {"inputs": [binary_input("a", list(shape), "FP32", size_a),
                           binary_input("b", list(shape), "FP32", size_b)],
                "outputs": [{"name": "sum", "parameters": {"binary_data": True}}]}

    sizes = [11, 13, 0, -1, 24, 2 ** 31, 2 ** 32 + 12, 2 ** 62, 2 ** 63 - 1, 2 ** 63, 2 ** 64, 2 ** 64 + 12, 10 ** 30,
             1.5, 12.0, Raw("NaN"), Raw("Infinity"), Raw("1e400"), "12", None, True, [12], {"n": 12}, Raw("-0")]
    for size in sizes:
        cases.append(binary_case(f"binary:pair a.size={size!r}", "pair", pair_header(size_a=size), [a, a]))
        cases.append(binary_case(f"binary:pair b.size={size!r}", "pair", pair_header(size_b=size), [a, a]))
        cases.append(binary_case(f"binary:trivial size={size!r}", "trivial",
                                 {"inputs": [binary_input("x", [1, 4], "FP32", size)]}, [x]))
    head_len = len(dumps(pair_header()).encode())
    for value in [head_len - 1, head_len + 1, head_len + 24, head_len + 25, -1, 1, 2 ** 63, 2 ** 64, 10 ** 30, "",
                  "abc", f" {head_len} ", f"0x{head_len:x}", "1e2", f"+{head_len}", f"{head_len}.0",
                  f"{head_len},{head_len}", "-0", "\t5", "9" * 100]:
        cases.append(binary_case(f"binary:pair header-length={value!r}", "pair", pair_header(), [a, a],
                                 header_length=str(value)))
    cases.append(binary_case("binary:pair no header-length", "pair", pair_header(), [a, a], header_length=False))
    cases.append(binary_case("binary:pair duplicate header-length", "pair", pair_header(), [a, a],
                             extra_headers={"inference-header-content-length": "3"}))
    cases.append(binary_case("binary:pair trailing bytes", "pair", pair_header(), [a, a], trailing=b"\x00" * 5))
    cases.append(binary_case("binary:pair missing bytes", "pair", pair_header(), [a, a[:5]]))
    cases.append(binary_case("binary:pair huge shape", "pair", pair_header(shape=(2 ** 40, 3)), [a, a]))
    cases.append(binary_case("binary:pair shape overflow", "pair", pair_header(shape=(2 ** 62, 2 ** 62)), [a, a]))
    cases.append(binary_case("binary:pair shape 0", "pair", pair_header(0, 0, shape=(0, 3)), []))
    cases.append(binary_case("binary:pair shape mismatch", "pair", pair_header(24, 12, shape=(2, 3)), [a + a, a]))
    mixed = pair_header()
    del mixed["inputs"][1]["parameters"]
    mixed["inputs"][1]["data"] = [1, 2, 3]
    cases.append(binary_case("binary:pair mixed json+binary", "pair", mixed, [a]))
    for flag in ["yes", 1, None, [], Raw("NaN")]:
        header = pair_header()
        header["parameters"] = {"binary_data_output": flag}
        header["outputs"][0]["parameters"]["binary_data"] = flag
        cases.append(binary_case(f"binary:pair binary_data={flag!r}", "pair", header, [a, a]))
    # Raw binary (header length 0): the body is the single input.
    for body in [b"", b"\x00", image[:-1], image + b"\x00", JPEG]:
        cases.append(Case(f"binary:raw digits {len(body)} bytes", "POST", "/v2/models/digits/infer", body,
                          {"Inference-Header-Content-Length": "0"}))
    cases.append(Case("binary:raw pair (two inputs)", "POST", "/v2/models/pair/infer", a + a,
                      {"Inference-Header-Content-Length": "0"}))
    # Float bytes declared BYTES on a float input; the image input fed FP32 directly.
    cases.append(binary_case("binary:trivial BYTES", "trivial",
                             {"inputs": [binary_input("x", [1, 4], "BYTES", 16)]}, [x]))
    cases.append(binary_case("binary:digits image FP32 via binary", "digits",
                             {"inputs": [binary_input("image", [1, 1, 8, 8], "FP32", 256)]}, [image]))
    return cases


def bytes_prefix_cases(rng):
    """BYTES tensors for the image input with bad 4-byte length prefixes (binary extension)."""
    pack = lambda n: struct.pack("<I", n)  # noqa: E731
    good = pack(len(JPEG)) + JPEG
    payloads = {
        "prefix 0xFFFFFFFF": pack(0xFFFFFFFF) + JPEG,
        "prefix len+1": pack(len(JPEG) + 1) + JPEG,
        "prefix len-1": pack(len(JPEG) - 1) + JPEG,
        "2 bytes": b"\x01\x00",
        "3 bytes": b"\x01\x00\x00",
        "empty element": pack(0),
        "1000 empty elements": pack(0) * 1000,
        "33 images (> max_batch_size)": good * 33,
        "prefix 2^31": pack(2 ** 31) + b"x",
        "trailing byte": good + b"\x00",
        "trailing 3 bytes": good + b"\x00\x00\x00",
        "random element": pack(200) + bytes(rng.randrange(256) for _ in range(200)),
        "good then garbage element": good + pack(5) + b"hello",
        "no prefix": JPEG,
        "empty payload": b"",
        "2 good": good * 2,
    }
    cases = []
    for label, payload in payloads.items():
        for shape in ([1], [2], [0], [], [1, 1], [2 ** 40], [33], [-1]):
            header = {"inputs": [binary_input("image", shape, "BYTES", len(payload))]}
            cases.append(binary_case(f"bytes-prefix:{label} shape={shape}", "digits", header, [payload]))
    # The same through JSON BYTES data.
    for data in [["not a jpeg"], [{"b64": "%%%"}], [{"b64": ""}], [{"b64": 5}], [{"b64": b64(JPEG), "x": 1}],
                 [[{"b64": b64(JPEG)}]], [{"b64": b64(JPEG[:100])}], [1, 2], [None], "single string",
                 [{"b64": "A"}], [{"b64": b64(JPEG)}] * 33, [{"b64": b64(JPEG)}, "text"], []]:
        cases.append(json_case(f"bytes-json:{json.dumps(data)[:60]}", "/v2/models/digits/infer",
                               {"inputs": [{"name": "image", "shape": [len(data) if isinstance(data, list) else 1],
                                            "datatype": "BYTES", "data": data}]}))
    # A BYTES input to a model without an image input.
    cases.append(binary_case("bytes-prefix:trivial BYTES", "trivial", {"inputs": [binary_input("x", [1], "BYTES", 8)]},
                             [pack(0xFFFFFFF0) + b"abcd"]))
    return cases


def jpeg_sof(data):
    """Offset of the SOFn segment's marker in a JPEG."""
    index = 2
    while index + 4 <= len(data):
        if data[index] != 0xFF:
            return None
        marker = data[index + 1]
        length = struct.unpack(">H", data[index + 2:index + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return index
        index += 2 + length
    return None


def patched_jpegs():
    sof = jpeg_sof(JPEG)
    assert sof is not None
    out = {}

    def patch(offset, fmt, value):
        data = bytearray(JPEG)
        struct.pack_into(fmt, data, sof + offset, value)
        return bytes(data)
    for height, width in [(65535, 65535), (0, 0), (1, 65535), (65535, 1), (16384, 16384), (0, 8), (8, 0)]:
        data = bytearray(JPEG)
        struct.pack_into(">HH", data, sof + 5, height, width)
        out[f"sof {height}x{width}"] = bytes(data)
    for components in (0, 2, 3, 4, 5, 255):
        out[f"sof components={components}"] = patch(9, ">B", components)
    for precision in (0, 12, 16, 255):
        out[f"sof precision={precision}"] = patch(4, ">B", precision)
    out["sof length=0"] = patch(2, ">H", 0)
    out["sof length=65535"] = patch(2, ">H", 65535)
    progressive = bytearray(JPEG)
    progressive[sof + 1] = 0xC2
    out["marked progressive"] = bytes(progressive)
    lossless = bytearray(JPEG)
    lossless[sof + 1] = 0xC3
    out["marked lossless"] = bytes(lossless)
    arithmetic = bytearray(JPEG)
    arithmetic[sof + 1] = 0xC9
    out["marked arithmetic"] = bytes(arithmetic)
    out["no EOI"] = JPEG[:-2]
    out["two EOI"] = JPEG + b"\xff\xd9"
    out["jpeg + jpeg"] = JPEG + JPEG7
    out["SOI only"] = b"\xff\xd8"
    out["SOI EOI"] = b"\xff\xd8\xff\xd9"
    return out


def image_case(label, data, form):
    """`data` as a JPEG in one of the six ways the server takes images."""
    if form == 0:
        return json_case(f"{label} (v1 b64)", "/v1/models/digits:predict", {"instances": [{"b64": b64(data)}]})
    if form == 1:
        return Case(f"{label} (v1 raw image/jpeg)", "POST", "/v1/models/digits:predict", data, JPEG_HEADERS)
    if form == 2:
        return Case(f"{label} (v2 raw image/jpeg)", "POST", "/v2/models/digits/infer", data, JPEG_HEADERS)
    if form == 3:
        payload = struct.pack("<I", len(data)) + data
        return binary_case(f"{label} (v2 BYTES binary)", "digits",
                           {"inputs": [binary_input("image", [1], "BYTES", len(payload))]}, [payload])
    if form == 4:
        return json_case(f"{label} (v2 BYTES json)", "/v2/models/digits/infer",
                         {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                                      "data": [{"b64": b64(data)}]}]})
    return json_case(f"{label} (v1 image_bytes)", "/v1/models/digits:predict",
                     {"inputs": [{"image_bytes": {"b64": b64(data)}}]})


def jpeg_cases(rng):
    cases = []
    # Random bytes, with and without a JPEG signature.
    for index, length in enumerate([0, 1, 2, 3, 4, 10, 100, 454, 1000, 5000, 100000]):
        for prefix in (b"", b"\xff\xd8", b"\xff\xd8\xff\xe0", JPEG[:jpeg_sof(JPEG)], JPEG[:200]):
            data = prefix + bytes(rng.randrange(256) for _ in range(length))
            cases.append(image_case(f"jpeg-random:{len(prefix)}+{length}", data, (index + len(prefix)) % 6))
    # Every truncation of a valid JPEG, rotating through the six forms.
    for cut in range(len(JPEG)):
        cases.append(image_case(f"jpeg-truncated:{cut}/{len(JPEG)}", JPEG[:cut], cut % 6))
    # Corrupted bytes in a valid JPEG.
    for index in range(600):
        data = bytearray(JPEG)
        for _ in range(rng.choice([1, 2, 8, 40])):
            data[rng.randrange(len(data))] = rng.randrange(256)
        cases.append(image_case(f"jpeg-corrupt:{index}", bytes(data), index % 6))
    for label, data in patched_jpegs().items():
        for form in range(6):
            cases.append(image_case(f"jpeg-patched:{label}", data, form))
    # Images where the model takes no image.
    cases.append(Case("jpeg:pair raw image/jpeg", "POST", "/v2/models/pair/infer", JPEG, JPEG_HEADERS))
    cases.append(Case("jpeg:trivial v1 raw image/jpeg", "POST", "/v1/models/trivial:predict", JPEG, JPEG_HEADERS))
    cases.append(json_case("jpeg:trivial v1 b64", "/v1/models/trivial:predict", {"instances": [{"b64": b64(JPEG)}]}))
    cases.append(json_case("jpeg:pair v1 b64", "/v1/models/pair:predict",
                           {"instances": [{"a": {"b64": b64(JPEG)}, "b": [1, 2, 3]}]}))
    return cases


def path_cases(rng):
    v1 = dumps({"instances": [[0.0, 1.0, 2.0, 3.0]]}).encode()
    v2 = dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0, 1, 2, 3]}]}).encode()
    names = ["%", "%2", "%zz", "%00", "%2F", "%2f..%2f", "%C0%AF", "%ED%A0%80", "%FF", "%F0%9F%8E%89", "%25", "%%",
             "%+1", "%-1", "tri%76ial", "%u0074rivial", "..", ".", "trivial%20", "%20", "\u00e9", "%E9", "trivial;x",
             "trivial%3Apredict", "trivial:predict:predict", "a" * 1000, "a" * 8000, "a" * 60000, "%41" * 5000, "\x7f",
             "tri\tvial", "trivial%0D%0AX-Injected:%201", ""]
    versions = ["99999999999999999999", "9223372036854775807", "9223372036854775808", "-1", "0", "1.0", "01", "1e3",
                "\u0663", "\uff11", "%31", "", "1%00", "0x1", " 1", "+1", "1" * 5000]
    labels = ["stable", "%00", "%ff", "", "a" * 5000, "..", "%2F", "canary:x"]
    cases = []
    for name in names:
        tag = f"{name[:40]!r}"
        cases.append(Case(f"path:v1 status {tag}", "GET", f"/v1/models/{name}"))
        cases.append(Case(f"path:v1 predict {tag}", "POST", f"/v1/models/{name}:predict", v1, JSON_HEADERS))
        cases.append(Case(f"path:v2 infer {tag}", "POST", f"/v2/models/{name}/infer", v2, JSON_HEADERS))
        cases.append(Case(f"path:v2 ready {tag}", "GET", f"/v2/models/{name}/ready"))
        cases.append(Case(f"path:repository load {tag}", "POST", f"/v2/repository/models/{name}/load"))
    for version in versions:
        tag = f"{version[:40]!r}"
        v1_path, v2_path = f"/v1/models/trivial/versions/{version}", f"/v2/models/trivial/versions/{version}"
        cases.append(Case(f"path:v1 version {tag}", "GET", v1_path))
        cases.append(Case(f"path:v1 version metadata {tag}", "GET", v1_path + "/metadata"))
        cases.append(Case(f"path:v1 version predict {tag}", "POST", v1_path + ":predict", v1, JSON_HEADERS))
        cases.append(Case(f"path:v2 version {tag}", "GET", v2_path))
        cases.append(Case(f"path:v2 version infer {tag}", "POST", v2_path + "/infer", v2, JSON_HEADERS))
    for label in labels:
        cases.append(Case(f"path:v1 label {label[:40]!r}", "GET", f"/v1/models/trivial/labels/{label}"))
        cases.append(Case(f"path:v1 label predict {label[:40]!r}", "POST", f"/v1/models/trivial/labels/{label}:predict",
                          v1, JSON_HEADERS))
    odd_paths = [
        "/v1/models/trivial/versions", "/v1/models/trivial/labels", "/v1/models/trivial/versions/1/labels/x",
        "/v1/models/trivial/metadata/extra", "/v1/models/trivial:", "/v1/models/trivial:PREDICT", "/v1/models/:predict",
        "/v1/models//versions/1", "/V1/MODELS/trivial", "/v1/models/trivial:classify", "/v1/models/trivial:regress",
        "/v1/models/trivial:explain", "/v1/models/trivial:predict?x=1", "/v1/models/trivial#frag", "//v2//models",
        "/v2/models/trivial/versions", "/v2/models/trivial/versions/1/versions/1/infer", "/v2/health",
        "/v2/health/live/x", "/v2/repository", "/v2/repository/index/x", "/v2/repository/models/trivial",
        "/v2/models/trivial/infer/", "/v2/models/trivial/config", "/metrics/x", "/../../etc/passwd", "*",
        "http://127.0.0.1/v2/health/live", "/v2/models/trivial/infer?" + "q" * 6000, "/" + "a/" * 3000]
    for path in odd_paths:
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "BREW"]:
            body = v1 if ":" in path.rsplit("/", 1)[-1] else v2 if method == "POST" else b""
            # TF Serving's :classify / :regress and KServe's :explain are documented as not implemented.
            allow = (501,) if any(v in path.lower() for v in (":classify", ":regress", ":explain")) else ()
            cases.append(Case(f"path:{method} {path[:60]}", method, path, body, JSON_HEADERS, allow=allow))
    # Repository extension bodies.
    for body in [b"", b"{", b"[]", b'{"ready": "yes"}', b'{"ready": true}', b"\x00" * 10, b'{"ready":' + b"[" * 100000]:
        cases.append(Case(f"repository:index {body[:30]!r}", "POST", "/v2/repository/index", body, JSON_HEADERS))
    return cases


def http_cases(rng):
    """Broken HTTP framing (raw bytes)."""
    post = b"POST /v2/models/trivial/infer HTTP/1.1\r\nHost: x\r\n"
    live = b"GET /v2/health/live HTTP/1.1\r\n"
    raw = [
        b"GARBAGE\r\n\r\n", b"GET\r\n\r\n", b"GET /v2/health/live\r\n\r\n", live + b"NoColon\r\n\r\n",
        b"GET  /v2/health/live  HTTP/1.1\r\nHost: x\r\n\r\n", live + b"Host: x\r\nX: a\x00b\r\n\r\n",
        post + b"Content-Length: -1\r\n\r\n",
        post + b"Content-Length: 99999999999999999999999\r\n\r\n",
        post + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\n{}",
        post + b"Content-Length: abc\r\n\r\n",
        post + b"Content-Length: +2\r\n\r\n{}",
        post + b"Content-Length: 0x2\r\n\r\n{}",
        post + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
        post + b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n{}\r\n0\r\n\r\n",
        post + b"Transfer-Encoding: chunked\r\n\r\n-2\r\n{}\r\n0\r\n\r\n",
        post + b"Transfer-Encoding: chunked\r\n\r\n2;" + b"x" * 10000 + b"\r\n{}\r\n0\r\n\r\n",
        post + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
        post + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
        live + b"X-A: b\r\n" * 5000 + b"\r\n",
        live + b"Host: x\r\nX-Long: " + b"v" * 100000 + b"\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64) + b"\r\n\r\n",  # a TLS ClientHello start
        b"GET /v2/health/live HTTP/1.1\nHost: x\n\n",
        live + b"Host: x\r\n Folded: y\r\n\r\n",
        post + b"Expect: 100-continue\r\nContent-Length: 10\r\n\r\n0123456789",
        post + b"Expect: 999-weird\r\nContent-Length: 2\r\n\r\n{}",
        post + b"Content-Length: 2\r\nInference-Header-Content-Length: 1\r\n\r\n{}",
        bytes(rng.randrange(256) for _ in range(300)) + b"\r\n\r\n",
        bytes(rng.randrange(32, 127) for _ in range(300)) + b"\r\n\r\n",
    ]
    cases = [Case(f"http:{data[:50]!r}", raw=data) for data in raw]
    # Over the 64 MiB body limit by the header alone; an 8 MB body with the wrong element count.
    cases.append(Case("http:Content-Length over the limit", raw=post + b"Content-Length: 67108865\r\n\r\n"))
    big = b'{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[' + b"1.25," * 1600000 + b'1]}]}'
    cases.append(json_case("http:8 MB of data for 4 elements", "/v2/models/trivial/infer", big))
    # Request parameters of every type (a small positive timeout legitimately ends in 504).
    for value in [-1, 0, 2 ** 63 - 1, 2 ** 64, 1.5, Raw("NaN"), "10", None, [], {}, True]:
        cases.append(json_case(f"params:timeout={value!r}", "/v2/models/trivial/infer",
                               {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0, 1, 2, 3]}],
                                "parameters": {"timeout": value, "priority": value, "sequence_id": value}}))
    # RFC 9112: an unknown transfer coding is 501, an unsupported HTTP version 505.
    cases.append(Case("http:unknown transfer coding", raw=post + b"Transfer-Encoding: gzip\r\n\r\n", allow=(501,)))
    cases.append(Case("http:HTTP/9.9", raw=b"GET /v2/health/live HTTP/9.9\r\nHost: x\r\n\r\n", allow=(505,)))
    # The real preface starts HTTP/2 (tested in test_server_http.py); a near miss is HTTP/1.1.
    cases.append(Case("http:almost the HTTP/2 preface", raw=b"PRI * HTTP/2.0\r\n\r\nSX\r\n\r\n", allow=(505,)))
    return cases


def number_token(rng):
    """A random number-ish token: mostly valid JSON numbers, some near-misses."""
    digits = lambda k: "".join(rng.choice("0123456789") for _ in range(k))  # noqa: E731
    token = rng.choice(["", "-", "+", "--"] if rng.random() < 0.1 else ["", "-"])
    token += rng.choice(["0", digits(1), digits(rng.randrange(1, 25)), "0" + digits(2), ""])
    if rng.random() < 0.4:
        token += "." + digits(rng.choice([0, 1, 3, 12, 60]))
    if rng.random() < 0.3:
        token += rng.choice("eE") + rng.choice(["", "+", "-"]) + digits(rng.choice([0, 1, 2, 3, 5, 20]))
    if rng.random() < 0.05:
        token = rng.choice(["NaN", "nan", "Infinity", "-Infinity", "inf", "true", "false", "null", "tru", "1_000",
                            "\\u0031"])
    return token or "0"


def numeric_tree(rng, depth, max_depth):
    """A JSON text of nested arrays of numbers/booleans: rectangular, ragged, empty, mixed."""
    if depth >= max_depth or (depth > 0 and rng.random() < 0.15):
        roll = rng.random()
        if roll < 0.85:
            return number_token(rng)
        return rng.choice(["true", "false", "[]", "null", '"1"', "{}"])
    width = rng.choice([0, 1, 1, 2, 3, 4]) if depth < 8 else rng.choice([0, 1, 1, 1, 2])
    separator = rng.choice([",", ",", ",", ", ", " ,\n\t", ",,", ""]) if rng.random() < 0.1 else ","
    items = [numeric_tree(rng, depth + 1, max_depth) for _ in range(width)]
    text = "[" + separator.join(items) + ("," if rng.random() < 0.03 else "") + "]"
    return text


def numeric_json_cases(rng, count):
    """Grammar-generated numeric arrays (the parser's typed fast path) as tensor data, V1
    instances and shapes."""
    cases = []
    for index in range(count):
        max_depth = rng.choice([1, 2, 3, 4, 6, 10, 62, 63, 64, 65, 66, 70, 200])
        tree = numeric_tree(rng, 0, max_depth)
        if max_depth >= 60 and rng.random() < 0.5:  # a straight chain to the depth limit
            tree = "[" * max_depth + number_token(rng) + "]" * max_depth
        shape = rng.choice(["[1,4]", "[4]", "[]", tree, "[" + number_token(rng) + ",4]"])
        form = index % 4
        if form == 0:
            body = '{"inputs":[{"name":"x","shape":%s,"datatype":"%s","data":%s}]}' % (
                shape, rng.choice(["FP32", "FP32", "INT64", "UINT8", "BOOL", "FP64", "INT8", "UINT64"]), tree)
            cases.append(json_case(f"numeric:v2 data depth<={max_depth}", "/v2/models/trivial/infer", body.encode()))
        elif form == 1:
            body = '{"instances":%s}' % tree
            cases.append(json_case(f"numeric:v1 instances depth<={max_depth}", "/v1/models/trivial:predict",
                                   body.encode()))
        elif form == 2:
            body = '{"inputs":{"a":%s,"b":%s}}' % (tree, numeric_tree(rng, 0, max_depth))
            cases.append(json_case(f"numeric:v1 columns depth<={max_depth}", "/v1/models/pair:predict", body.encode()))
        else:
            body = ('{"inputs":[{"name":"a","shape":%s,"datatype":"FP32","data":[1,2,3]},'
                    '{"name":"b","shape":[1,3],"datatype":"FP32","data":%s}]}' % (shape, tree))
            cases.append(json_case(f"numeric:v2 shape+data depth<={max_depth}", "/v2/models/pair/infer", body.encode()))
    return cases


def truncation_cases():
    """Every prefix, and every single-byte deletion, of a valid V1 and V2 pair request."""
    cases = []
    documents = [("/v2/models/pair/infer", dumps(base_requests()[9][2]).encode()),
                 ("/v1/models/pair:predict", dumps(base_requests()[4][2]).encode())]
    for path, body in documents:
        for cut in range(len(body)):
            cases.append(json_case(f"truncated-json:{path} [:{cut}]", path, body[:cut]))
            cases.append(json_case(f"deleted-byte:{path} -[{cut}]", path, body[:cut] + body[cut + 1:]))
    for prefix in [b"\xef\xbb\xbf", b"\x0b", b"\xa0", b"\x00", b" \t\r\n"]:
        cases.append(json_case(f"prefixed-json:{prefix!r}", "/v2/models/pair/infer", prefix + documents[0][1]))
    return cases


@functools.lru_cache(maxsize=None)
def corpus():
    rng = random.Random(SEED)
    cases = (mutation_cases(rng, 4000) + numeric_json_cases(rng, 3000) + truncation_cases() + datatype_cases(rng) +
             binary_cases(rng) + bytes_prefix_cases(rng) + jpeg_cases(rng) + path_cases(rng) + http_cases(rng))
    random.Random(SEED + 1).shuffle(cases)
    return tuple(cases)


# --------------------------------------------------------------------------- sending and checking

class Hang(Exception):
    pass


class Incomplete(Exception):
    pass


def send(port, data, head_only=False, timeout=HANG_SECONDS):
    """Sends `data` on a fresh connection; returns the RawResponse. Raises Hang if no complete
    response arrives within `timeout`, Incomplete if the server closes without one."""
    deadline = time.monotonic() + timeout
    sock = socket.create_connection((HOST, port), timeout=timeout)
    try:
        sock.settimeout(timeout)
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before reading everything (413, 431, 400)
        reader = RawReader(sock)
        try:
            response = reader.read_response(head_only=head_only)
        except socket.timeout:
            raise Hang(f"no complete response within {timeout} s")
        except (EOFError, ConnectionResetError) as error:
            raise Incomplete(f"connection closed without a complete response: {error!r}")
        if time.monotonic() > deadline:
            raise Hang(f"response took longer than {timeout} s")
        return response
    finally:
        sock.close()


def check(case, port):
    """None if the server's answer to `case` is acceptable, else a finding text."""
    try:
        response = send(port, case.bytes(), head_only=case.method == "HEAD" and case.raw is None)
    except (Hang, Incomplete) as error:
        return f"{type(error).__name__}: {error}"
    except AssertionError as error:
        return f"malformed response: {error}"
    if response.status >= 500 and response.status not in case.allow:
        return f"HTTP {response.status} for a client mistake: {response.body[:300]!r}"
    if response.status >= 400 and case.method != "HEAD":
        content_type = response.headers.get("content-type", "")
        if not content_type.startswith("application/json"):
            return f"HTTP {response.status} error with Content-Type {content_type!r}: {response.body[:200]!r}"
        try:
            document = json.loads(response.body)
        except ValueError as error:
            return f"HTTP {response.status} error body is not JSON ({error}): {response.body[:200]!r}"
        if not (isinstance(document, dict) and isinstance(document.get("error"), str) and len(document["error"]) >= 5):
            return f"HTTP {response.status} error body is not {{\"error\": \"<message>\"}}: {response.body[:200]!r}"
    return None


def live_within(server, seconds=LIVE_SECONDS):
    """None if the process is alive and /v2/health/live answers 200 within `seconds`."""
    if server.process.poll() is not None:
        return f"model-server exited with {server.process.returncode}"
    try:
        response = send(server.rest_port, http_request_bytes("GET", "/v2/health/live", b"", {"Connection": "close"}),
                        timeout=seconds)
    except (Hang, Incomplete, OSError) as error:
        return f"/v2/health/live did not answer within {seconds} s: {error!r}"
    if response.status != 200:
        return f"/v2/health/live answered {response.status}"
    return None


def summary(findings):
    """Distinct problems (first line, server message) with their counts."""
    counts = {}
    for finding in findings:
        key = finding.splitlines()[0][:160]
        counts[key] = counts.get(key, 0) + 1
    return "\n".join(f"  {count:4d} x {key}" for key, count in sorted(counts.items(), key=lambda kv: -kv[1]))


def stderr_tail(server, lines=30):
    return "\n".join(server.stderr().splitlines()[-lines:])


def proc_status(pid, field):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def in_flight(server):
    response = send(server.rest_port, http_request_bytes("GET", "/metrics", b"", {"Connection": "close"}))
    for line in response.body.decode().splitlines():
        if line.startswith("model_server_requests_in_flight "):
            return float(line.split()[1])
    raise AssertionError("no model_server_requests_in_flight in /metrics")


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def server(module_server_factory, tmp_path_factory):
    repository = tmp_path_factory.mktemp("fuzz-repository")
    shutil.copytree(ROOT_MODELS / "digits", repository / "digits")
    shutil.copytree(ROOT_MODELS / "trivial", repository / "trivial")
    make_model_dir(repository / "pair", {1: pair_bytes()})
    return module_server_factory.start("--rest_api_host", HOST, "--model_repository", repository)


# --------------------------------------------------------------------------- tests

def test_fuzz_corpus_gets_4xx_json_errors_and_server_stays_live(server):
    cases = corpus()
    port = server.rest_port
    findings = []
    started = time.monotonic()
    sent = 0
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for start in range(0, len(cases), BATCH):
            if time.monotonic() - started > CORPUS_BUDGET:
                break
            batch = cases[start:start + BATCH]
            for case, finding in zip(batch, pool.map(lambda c: check(c, port), batch)):
                if finding:
                    findings.append(f"{finding}\n    reproduce: {case.reproducer(port)}")
            sent += len(batch)
            problem = live_within(server)
            if problem:
                labels = "\n".join(f"  {c.label}" for c in batch)
                pytest.fail(f"after batch {start // BATCH} ({sent} requests): {problem}\nbatch:\n{labels}\n"
                            f"stderr tail:\n{stderr_tail(server)}\n\nearlier findings:\n" + "\n".join(findings[:20]))
    elapsed = time.monotonic() - started
    print(f"\nfuzz corpus: {sent} of {len(cases)} cases in {elapsed:.1f} s, {len(findings)} findings")
    assert sent == len(cases), f"only {sent} of {len(cases)} cases ran within {CORPUS_BUDGET} s"
    assert not findings, (f"{len(findings)} of {sent} requests were mishandled:\n{summary(findings)}\n\n"
                          + "\n".join(findings[:40]))


def test_concurrent_clients_disconnecting_mid_request(server):
    """16 clients open, half-send and drop connections (also with RST) in every phase of a
    request while others expect normal answers; afterwards fds and in-flight requests return
    to their baseline and the server stays live."""
    port = server.rest_port
    pid = server.process.pid
    assert live_within(server) is None
    baseline_fds = fd_count(pid)
    big = dumps({"instances": [ROW7.tolist()] * 32}).encode()
    image_request = http_request_bytes("POST", "/v1/models/digits:predict", JPEG, {"Content-Type": "image/jpeg"})
    infer_request = http_request_bytes("POST", "/v1/models/digits:predict", big, {"Content-Type": "application/json"})
    bad_request = http_request_bytes("POST", "/v2/models/digits/infer", b'{"inputs": [{"name": "image"', {})
    errors = []
    stop = time.monotonic() + 5.0

    def client(seed):
        rng = random.Random(seed)
        while time.monotonic() < stop:
            action = rng.randrange(8)
            try:
                sock = socket.create_connection((HOST, port), timeout=HANG_SECONDS)
            except OSError as error:
                errors.append(f"connect failed: {error!r}")
                return
            try:
                if action == 0:  # connect and close
                    pass
                elif action == 1:  # half the request line
                    sock.sendall(b"POST /v1/models/dig")
                elif action == 2:  # headers promise a body that never comes whole
                    sock.sendall(infer_request[:len(infer_request) // 2])
                elif action == 3:  # full inference request, gone before the answer
                    sock.sendall(rng.choice([infer_request, image_request, bad_request]))
                elif action == 4:  # full request then RST
                    sock.sendall(rng.choice([infer_request, image_request]))
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                elif action == 5:  # mid-body RST
                    sock.sendall(infer_request[:rng.randrange(len(infer_request))])
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                elif action == 6:  # pipelined requests, read only part of the first answer
                    sock.sendall(infer_request * 3)
                    sock.recv(10)
                else:  # a normal client must still be served
                    sock.sendall(http_request_bytes("POST", "/v1/models/digits:predict", JPEG,
                                                    {"Content-Type": "image/jpeg", "Connection": "close"}))
                    response = RawReader(sock).read_response()
                    if response.status != 200:
                        errors.append(f"normal request got {response.status}: {response.body[:200]!r}")
            except socket.timeout:
                errors.append(f"action {action}: no answer within {HANG_SECONDS} s")
            except (OSError, EOFError) as error:
                if action == 7:
                    errors.append(f"normal request failed: {error!r}")
            finally:
                sock.close()

    threads = [threading.Thread(target=client, args=(SEED + n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HANG_SECONDS + 10)
    problem = live_within(server)
    assert problem is None, f"{problem}\nstderr tail:\n{stderr_tail(server)}"
    assert not errors, "\n".join(errors[:20])
    # Abandoned connections and requests are released (the server's request timeout closes
    # half-sent ones; give it time).
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        fds, flying = fd_count(pid), in_flight(server)
        if fds <= baseline_fds + 2 and flying == 0:
            break
        time.sleep(0.25)
    print(f"\nfds: baseline {baseline_fds}, after disconnects {fds}; in-flight requests {flying}")
    assert flying == 0, f"{flying} requests still in flight after all clients left"
    assert fds <= baseline_fds + 2, f"fd leak: {baseline_fds} fds before, {fds} after the clients left"


def large_bad_requests():
    """Requests of about 1.2 MB that fail: 2000 images where max_batch_size is 32, or one bad
    image among 2000."""
    many = [{"b64": b64(JPEG)}] * 2000
    payload = (struct.pack("<I", len(JPEG)) + JPEG) * 2000
    return [
        json_case("large:v1 2000 b64 images (batch too big)", "/v1/models/digits:predict", {"instances": many}),
        binary_case("large:v2 2000 BYTES images (batch too big)", "digits",
                    {"inputs": [{"name": "image", "shape": [2000], "datatype": "BYTES",
                                 "parameters": {"binary_data_size": len(payload)}}]}, [payload]),
        json_case("large:v1 1999 images + 1 truncated", "/v1/models/digits:predict",
                  {"instances": many[:-1] + [{"b64": b64(JPEG[:200])}]}),
        json_case("large:v2 json 2000 BYTES, one not a JPEG", "/v2/models/digits/infer",
                  {"inputs": [{"name": "image", "shape": [2000], "datatype": "BYTES",
                               "data": many[:-1] + [{"b64": "AAAA"}]}]}),
    ]


def test_rss_does_not_grow_under_bad_traffic(server):
    """20 s of mixed bad traffic from 4 clients (the fuzz corpus cycled, every third request a
    ~1.2 MB one that fails): VmRSS, sampled every 0.2 s during the traffic and after it,
    stays within 100 MB of its value after a warm-up."""
    port = server.rest_port
    pid = server.process.pid
    cases = [case for case in corpus() if case.raw is None]
    random.Random(SEED + 2).shuffle(cases)
    large = large_bad_requests()
    findings = []
    samples = []
    sent = [0, 0]
    position = [0]

    def traffic(seconds):
        """4 clients send cases[position...] (interleaved) for `seconds`."""
        end = time.monotonic() + seconds
        first = position[0]

        def worker(lane):
            index, count, big = first + lane, 0, 0
            while time.monotonic() < end:
                if count % 3 == 0:
                    case = large[(index // 4) % len(large)]
                    big += 1
                else:
                    case = cases[index % len(cases)]
                index += 4
                count += 1
                finding = check(case, port)
                # Statuses and error bodies are the corpus test's business; here only hangs
                # and broken responses count.
                if finding and not finding.startswith("HTTP ") and len(findings) < 50:
                    findings.append(f"{finding}\n    reproduce: {case.reproducer(port)}")
            return count, big
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            counts = list(pool.map(worker, range(4)))
        position[0] += sum(c for c, _ in counts)
        sent[0] += sum(c for c, _ in counts)
        sent[1] += sum(b for _, b in counts)

    traffic(2.0)  # warm-up: allocator pools, caches, lazily created sessions
    assert live_within(server) is None
    time.sleep(0.5)
    sent[:] = [0, 0]
    before = proc_status(pid, "VmRSS")
    stop = threading.Event()

    def sample():
        while not stop.wait(0.2):
            samples.append(proc_status(pid, "VmRSS"))
    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        end = time.monotonic() + RSS_TRAFFIC_SECONDS
        while time.monotonic() < end:
            traffic(min(5.0, end - time.monotonic()))
            problem = live_within(server)
            assert problem is None, f"{problem}\nstderr tail:\n{stderr_tail(server)}"
        time.sleep(1.0)  # the traffic is over: what is still held now stays held
    finally:
        stop.set()
        sampler.join()
    after = proc_status(pid, "VmRSS")
    highest = max(samples + [after])
    report = (f"VmRSS after warm-up {before / 1024:.1f} MB; during {RSS_TRAFFIC_SECONDS:.0f} s of bad traffic "
              f"({sent[0]} requests, {sent[1]} of them ~1.2 MB) up to {highest / 1024:.1f} MB "
              f"(+{(highest - before) / 1024:.1f} MB); 1 s after it {after / 1024:.1f} MB "
              f"(+{(after - before) / 1024:.1f} MB)")
    print("\n" + report)
    assert (highest - before) / 1024 <= RSS_LIMIT_MB and (after - before) / 1024 <= RSS_LIMIT_MB, \
        f"RSS grew by more than {RSS_LIMIT_MB:.0f} MB under bad traffic: {report}"
    assert not findings, f"{len(findings)} mishandled requests during the RSS run:\n" + "\n".join(findings[:20])


def test_trickled_request_head_gets_408_within_the_request_timeout(server_factory, tmp_path):
    """A client that trickles its request line or headers one byte a second (slowloris) is cut
    off with 408 by --request_timeout_seconds like one that trickles its body; otherwise a few
    such clients hold every --max_connections slot indefinitely."""
    make_model_dir(tmp_path / "repository" / "pair", {1: pair_bytes()})
    timeout = 2
    slow = server_factory.start("--rest_api_host", HOST, "--model_repository", tmp_path / "repository",
                                "--request_timeout_seconds", timeout, "--idle_timeout_seconds", 3,
                                "--max_connections", 8)
    heads = {"request line": (b"GET /v2/health/li", b"v"),
             "headers": (b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Slow: ", b"a"),
             "body": (b"POST /v2/models/pair/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n", b"1")}
    limit = timeout + 8.0  # the server checks deadlines on a 1 s tick; the rest is room for a loaded machine
    outcomes = {}

    def trickle(label, first, byte):
        sock = socket.create_connection((HOST, slow.rest_port), timeout=HANG_SECONDS)
        start = time.monotonic()
        try:
            sock.sendall(first)
            sock.settimeout(0.05)
            while time.monotonic() - start < limit + 1:
                try:
                    data = sock.recv(4096)
                    outcomes[label] = (time.monotonic() - start, data)
                    return
                except socket.timeout:
                    pass
                except ConnectionResetError:
                    outcomes[label] = (time.monotonic() - start, b"<reset>")
                    return
                try:
                    sock.sendall(byte)
                except OSError:
                    outcomes[label] = (time.monotonic() - start, b"<closed>")
                    return
                time.sleep(0.5)
            outcomes[label] = (None, b"")
        finally:
            sock.close()

    threads = [threading.Thread(target=trickle, args=(label, *head)) for label, head in heads.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(limit + 10)
    report = {label: (None if t is None else round(t, 1), data[:40]) for label, (t, data) in outcomes.items()}
    print(f"\ntrickled heads (request timeout {timeout} s): {report}")
    late = [f"{label}: {'still open' if t is None else f'{t:.1f} s, {data[:40]!r}'}"
            for label, (t, data) in outcomes.items() if t is None or t > limit or not data.startswith(b"HTTP/1.1 408")]
    assert not late, (f"requests trickled slowly were not answered 408 within {limit} s "
                      f"(--request_timeout_seconds {timeout}): " + "; ".join(late))
