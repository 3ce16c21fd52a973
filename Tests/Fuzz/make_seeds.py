"""Writes the seed corpora Tests/Fuzz/Corpus/<target>/ (committed; rerun to regenerate).

Run with the test venv (onnx, Pillow):  $VENV_TEST/bin/python Tests/Fuzz/make_seeds.py
Each seed is a valid (or deliberately near-valid) input in the harness's input format (see the
header comment of Tests/Fuzz/Sources/<target>/*.swift); libFuzzer mutates from there.
"""

import base64
import io
import json
import os
import shutil
import struct
import zlib

import onnx
from onnx import TensorProto, helper
from PIL import Image

ROOT = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(ROOT, "Corpus")
FIXTURES = os.path.join(ROOT, "..", "Fixtures", "savedmodels")


def write(target, name, data):
    directory = os.path.join(CORPUS, target)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# --- a minimal protobuf writer -------------------------------------------------------------

def varint(n):
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number, value):
    """Length-delimited for bytes/str/list of encoded parts, varint for int."""
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    if isinstance(value, str):
        value = value.encode()
    return varint(number << 3 | 2) + varint(len(value)) + value


def packed_floats(number, values):
    return field(number, b"".join(struct.pack("<f", v) for v in values))


def packed_varints(number, values):
    return field(number, b"".join(varint(v) for v in values))


# --- http1: [cuts][offset u16]*cuts[limits][request] ----------------------------------------

http1 = {
    "get": b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n",
    "post": b"POST /v2/models/relu/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"a\": [1]}\n",
    "chunked": b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nTrailer: t\r\n\r\n",
    "pipelined": b"GET / HTTP/1.1\r\n\r\nGET /metrics HTTP/1.0\r\nConnection: keep-alive\r\n\r\nHEAD /v2 HTTP/1.1\r\nConnection: close\r\n\r\n",
    "continue": b"PUT /x?y=1 HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
}
for name, request in http1.items():
    write("http1", name, bytes([0, 1]) + request)
    write("http1", name + "-split", bytes([2]) + struct.pack("<HH", 7, 30) + bytes([0]) + request)
write("http1", "limits", bytes([1]) + struct.pack("<H", 12) + bytes([0x35]) + http1["post"])

# --- http2: [cut][frames after the preface] -------------------------------------------------

def frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def hpack(headers):
    """Literal header fields without indexing, new names, no Huffman (RFC 7541 6.2.2)."""
    out = bytearray()
    for name, value in headers:
        out += b"\x00" + bytes([len(name)]) + name.encode() + bytes([len(value)]) + value.encode()
    return bytes(out)


settings = frame(4, 0, 0, b"")
settings_ack = frame(4, 1, 0, b"")
grpc_headers = [(":method", "POST"), (":scheme", "http"), (":path", "/inference.GRPCInferenceService/ModelInfer"),
                (":authority", "x"), ("content-type", "application/grpc"), ("te", "trailers"), ("grpc-timeout", "5S")]
message = field(1, "relu")
grpc_call = frame(1, 4, 1, hpack(grpc_headers)) + frame(0, 1, 1, b"\x00" + struct.pack(">I", len(message)) + message)
compressed = zlib.compress(message)
gzip_headers = grpc_headers + [("grpc-encoding", "deflate")]
grpc_deflate = frame(1, 4, 3, hpack(gzip_headers)) + frame(0, 1, 3, b"\x01" + struct.pack(">I", len(compressed)) + compressed)
http_get = frame(1, 5, 5, hpack([(":method", "GET"), (":scheme", "http"), (":path", "/v2/health/ready"), (":authority", "x")]))
http_post = frame(1, 4, 7, hpack([(":method", "POST"), (":scheme", "http"), (":path", "/echo"), (":authority", "x"),
                                 ("content-length", "5")])) + frame(0, 1, 7, b"hello")
streaming = frame(1, 4, 9, hpack([(":method", "POST"), (":scheme", "http"), (":path", "/x.Y/ModelStream"),
                                  ("content-type", "application/grpc")]))
window = frame(8, 0, 0, struct.pack(">I", 1 << 20))
ping = frame(6, 0, 0, b"12345678")
rst = frame(3, 0, 1, struct.pack(">I", 8))
goaway = frame(7, 0, 0, struct.pack(">II", 0, 0))
write("http2", "grpc-unary", b"\x00" + settings + grpc_call)
write("http2", "grpc-split", b"\x80" + settings + settings_ack + grpc_call + ping)
write("http2", "grpc-deflate", b"\x40" + settings + grpc_deflate + window)
write("http2", "http-get-post", b"\xff" + settings + http_get + http_post)
write("http2", "streaming-rst-goaway", b"\x20" + settings + streaming + grpc_call + rst + goaway)

# --- v2-rest: [route][flags][header length u16][body] ---------------------------------------

def v2(route, flags, body, binary=b"", header_length=None):
    body = body.encode() if isinstance(body, str) else body
    length = len(body) if header_length is None else header_length
    return bytes([route, flags]) + struct.pack("<H", length) + body + binary


relu = json.dumps({"id": "1", "inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [[1, -2], [3, -4]]}],
                   "outputs": [{"name": "y", "parameters": {"classification": 1}}]})
mixed = json.dumps({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1.5, 2, -3e2]},
                               {"name": "k", "shape": [1, 3], "datatype": "INT64", "data": [1, -2, 9007199254740993]}],
                    "parameters": {"binary_data_output": True}})
binary_header = json.dumps({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "parameters": {"binary_data_size": 8}}],
                            "outputs": [{"name": "y", "parameters": {"binary_data": True}}]})
write("v2-rest", "relu-json", v2(0, 0, relu))
write("v2-rest", "mixed-json", v2(1, 4, mixed))
write("v2-rest", "relu-binary", v2(0, 2, binary_header, struct.pack("<ff", 1.0, -1.0)))
write("v2-rest", "raw-binary", v2(3, 3, struct.pack("<ff", 0.5, -0.5)))
write("v2-rest", "metadata", v2(6, 0, ""))


def jpeg(size, mode="RGB", **options):
    image = Image.new(mode, size)
    for x in range(size[0]):
        for y in range(size[1]):
            value = (x * 37 + y * 11) % 256
            image.putpixel((x, y), value if mode == "L" else tuple((value + 80 * c) % 256 for c in range(len(mode))))
    out = io.BytesIO()
    image.save(out, "JPEG", **options)
    return out.getvalue()


small = jpeg((12, 10))
image_json = json.dumps({"inputs": [{"name": "img", "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(small).decode()]}]})
write("v2-rest", "image-json", v2(2, 0, image_json))
write("v2-rest", "image-raw", v2(2, 12, small))

# --- tf-rest: [route][body] ------------------------------------------------------------------

write("tf-rest", "instances", bytes([0]) + json.dumps({"signature_name": "serving_default", "instances": [[1.0, -2.0], [0.5, 3]]}).encode())
write("tf-rest", "columnar", bytes([1]) + json.dumps({"inputs": {"x": [[1, 2, 3]], "k": [[4, 5, -6]]}}).encode())
write("tf-rest", "named-instances", bytes([1]) + json.dumps({"instances": [{"x": [1, 2, 3], "k": [1, 1, 1]}]}).encode())
write("tf-rest", "b64-image", bytes([2]) + json.dumps({"instances": [{"b64": base64.b64encode(small).decode()}]}).encode())
write("tf-rest", "classify", bytes([5]) + json.dumps({"context": {"x": [1.0]}, "examples": [{"x": [1.0, -1.0]}, {"x": [2, 3]}]}).encode())
write("tf-rest", "regress", bytes([6]) + json.dumps({"examples": [{"x": [0.25, 0.5]}]}).encode())
write("tf-rest", "status", bytes([9]))

# --- grpc-messages: [path][message] -----------------------------------------------------------

def infer_input(name, datatype, shape, contents=None):
    out = field(1, name) + field(2, datatype) + packed_varints(3, shape)
    if contents is not None:
        out += field(5, contents)
    return out


oip = field(1, "relu") + field(3, "id-1") + field(5, infer_input("x", "FP32", [1, 2], packed_floats(6, [1.0, -1.0]))) \
    + field(6, field(1, "y"))
oip_raw = field(1, "mixed") + field(5, infer_input("x", "FP32", [1, 3])) + field(5, infer_input("k", "INT64", [1, 3])) \
    + field(7, struct.pack("<fff", 1, 2, 3)) + field(7, struct.pack("<qqq", 1, 2, 3))
write("grpc-messages", "oip-typed", bytes([0]) + oip)
write("grpc-messages", "oip-raw", bytes([1]) + oip_raw)


def tensor_proto(dtype, dims, **values):
    shape = b"".join(field(2, field(1, d)) for d in dims)
    out = field(1, dtype) + field(2, shape)
    if "content" in values:
        out += field(4, values["content"])
    if "floats" in values:
        out += packed_floats(5, values["floats"])
    if "int64s" in values:
        out += packed_varints(10, values["int64s"])
    if "strings" in values:
        out += b"".join(field(8, s) for s in values["strings"])
    return out


def map_entry(key, value):
    return field(1, key) + field(2, value)


spec = field(1, "relu") + field(3, "serving_default")
predict = field(1, spec) + field(2, map_entry("x", tensor_proto(1, [1, 2], floats=[1.5, -2.5])))
predict_content = field(1, field(1, "mixed")) + field(2, map_entry("x", tensor_proto(1, [1, 3], content=struct.pack("<fff", 1, 2, 3)))) \
    + field(2, map_entry("k", tensor_proto(9, [1, 3], int64s=[1, 2, 3]))) + field(3, "y")
predict_image = field(1, field(1, "image")) + field(2, map_entry("img", tensor_proto(7, [1], strings=[small])))
write("grpc-messages", "tf-predict", bytes([2]) + predict)
write("grpc-messages", "tf-predict-content", bytes([3]) + predict_content)
write("grpc-messages", "tf-predict-image", bytes([2]) + predict_image)


def example(features):
    entries = b""
    for name, floats in features.items():
        entries += field(1, map_entry(name, field(2, packed_floats(1, floats))))
    return field(1, entries)


examples = field(1, field(1, example({"x": [1.0, -1.0]})) + field(1, example({"x": [2.0, 0.5]})))
write("grpc-messages", "tf-classify", bytes([4]) + field(1, spec) + field(2, examples))
write("grpc-messages", "tf-regress", bytes([5]) + field(1, spec) + field(2, examples))
write("grpc-messages", "tf-metadata", bytes([6]) + field(1, spec) + field(2, "signature_def"))
write("grpc-messages", "model-status", bytes([7]) + field(1, field(1, "relu")))
write("grpc-messages", "oip-metadata", bytes([8]) + field(1, "mixed") + field(2, "1"))

# --- text-formats: [format][text] -------------------------------------------------------------

write("text-formats", "config", b"\x00" + b'''name: "m"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "x" data_type: TYPE_FP32 dims: [ 3, 8, 8 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 10 ] label_filename: "labels.txt" } ]
version_policy: { specific: { versions: [ 1, 3 ] } }
dynamic_batching { preferred_batch_size: [ 4, 8 ] max_queue_delay_microseconds: 500 }
parameters { key: "image_input" value { string_value: "img" } }
parameters { key: "image_resize" value { string_value: "shorter_side:9" } }
parameters { key: "image_mean" value { string_value: "0.485, 0.456, 0.406" } }
''')
write("text-formats", "config-latest", b"\x03" + b'version_policy { latest { num_versions: 2 } }\nparameters { key: "image_input" value { string_value: "x" } }\n')
write("text-formats", "model-config-list", b"\x01" + b'''model_config_list {
  config { name: "a" base_path: "/models/a" model_platform: "tensorflow"
           model_version_policy { specific { versions: 1 versions: 2 } }
           version_labels { key: "stable" value: 1 } }
  config { name: "b" base_path: "/models/b" model_version_policy { all {} } }
}
''')
write("text-formats", "batching", b"\x02" + b'''max_batch_size { value: 32 }
batch_timeout_micros { value: 1000 }
max_enqueued_batches { value: 100 }
num_batch_threads { value: 2 }
allowed_batch_sizes: 8
allowed_batch_sizes: 32
''')

# --- onnx: model files ------------------------------------------------------------------------

def model(nodes, inputs, outputs, initializers=(), opset=13):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString()


f = TensorProto.FLOAT
write("onnx", "relu", model([helper.make_node("Relu", ["x"], ["y"])],
                            [helper.make_tensor_value_info("x", f, ["N", 4])], [helper.make_tensor_value_info("y", f, ["N", 4])]))
write("onnx", "conv-pool", model(
    [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], strides=[1, 1]),
     helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"]),
     helper.make_node("MaxPool", ["n"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
     helper.make_node("GlobalAveragePool", ["p"], ["g"]), helper.make_node("Flatten", ["g"], ["y"])],
    [helper.make_tensor_value_info("x", f, ["N", 2, 6, 6])], [helper.make_tensor_value_info("y", f, ["N", 2])],
    [helper.make_tensor("w", f, [2, 2, 3, 3], [0.1] * 36), helper.make_tensor("b", f, [2], [0.0, 1.0]),
     helper.make_tensor("s", f, [2], [1.0, 2.0]), helper.make_tensor("m", f, [2], [0.0, 0.5]),
     helper.make_tensor("v", f, [2], [1.0, 1.0])]))
write("onnx", "gemm-softmax", model(
    [helper.make_node("Gemm", ["x", "w", "b"], ["g"], transB=1), helper.make_node("Softmax", ["g"], ["y"], axis=-1)],
    [helper.make_tensor_value_info("x", f, ["N", 3])], [helper.make_tensor_value_info("y", f, ["N", 2])],
    [helper.make_tensor("w", f, [2, 3], [1, 2, 3, 4, 5, 6]), helper.make_tensor("b", f, [2], [0, 1])]))
write("onnx", "shape-ops", model(
    [helper.make_node("Reshape", ["x", "shape"], ["r"]), helper.make_node("Transpose", ["r"], ["t"], perm=[0, 2, 1]),
     helper.make_node("Split", ["t"], ["s1", "s2"], axis=1), helper.make_node("Concat", ["s2", "s1"], ["c"], axis=1),
     helper.make_node("Slice", ["c", "starts", "ends", "axes"], ["sl"]),
     helper.make_node("Gather", ["sl", "idx"], ["y"], axis=2)],
    [helper.make_tensor_value_info("x", f, ["N", 6])], [helper.make_tensor_value_info("y", f, None)],
    [helper.make_tensor("shape", TensorProto.INT64, [3], [-1, 2, 3]), helper.make_tensor("starts", TensorProto.INT64, [1], [0]),
     helper.make_tensor("ends", TensorProto.INT64, [1], [2]), helper.make_tensor("axes", TensorProto.INT64, [1], [2]),
     helper.make_tensor("idx", TensorProto.INT64, [2], [1, 0])]))
write("onnx", "elementwise", model(
    [helper.make_node("Mul", ["x", "k"], ["m"]), helper.make_node("Add", ["m", "x"], ["a"]),
     helper.make_node("Sigmoid", ["a"], ["s"]), helper.make_node("ReduceMean", ["s"], ["r"], axes=[1], keepdims=1),
     helper.make_node("Sub", ["s", "r"], ["y"])],
    [helper.make_tensor_value_info("x", f, ["N", 4])], [helper.make_tensor_value_info("y", f, ["N", 4])],
    [helper.make_tensor("k", f, [1], [2.0])]))
write("onnx", "matmul-constant", model(
    [helper.make_node("Constant", [], ["c"], value=helper.make_tensor("v", f, [4, 2], [1] * 8)),
     helper.make_node("MatMul", ["x", "c"], ["mm"]), helper.make_node("Unsqueeze", ["mm", "ax"], ["u"]),
     helper.make_node("Squeeze", ["u", "ax"], ["y"])],
    [helper.make_tensor_value_info("x", f, ["N", 4])], [helper.make_tensor_value_info("y", f, ["N", 2])],
    [helper.make_tensor("ax", TensorProto.INT64, [1], [1])]))

# --- savedmodel: [which][length u32][bytes]... from the committed fixtures ---------------------

NAMES = ["saved_model.pb", "variables/variables.index", "variables/variables.data-00000-of-00001",
         "variables/variables.data-00000-of-00002", "variables/variables.data-00001-of-00002",
         "assets/vocabulary.txt", "fingerprint.pb"]


def container(export, rename=None):
    out = b""
    for index, name in enumerate(NAMES):
        source = os.path.join(export, (rename or {}).get(name, name))
        if os.path.exists(source):
            data = open(source, "rb").read()
            out += bytes([index]) + struct.pack("<I", len(data)) + data
    return out


write("savedmodel", "tf1-graph", container(os.path.join(FIXTURES, "tf1_graph", "export")))
assets = os.path.join(FIXTURES, "tf2_module", "export", "assets")
asset = sorted(os.listdir(assets))[0] if os.path.isdir(assets) else "vocabulary.txt"
write("savedmodel", "tf2-module", container(os.path.join(FIXTURES, "tf2_module", "export"),
                                            {"assets/vocabulary.txt": "assets/" + asset}))

# --- jpeg: [8 configuration bytes][JPEG] -------------------------------------------------------

write("jpeg", "rgb-stretch", bytes([8, 8, 0, 0, 3, 0, 0, 0]) + jpeg((16, 12)))
write("jpeg", "gray-shorter", bytes([6, 9, 3, 5, 3, 0, 1, 0]) + jpeg((9, 17), "L"))
write("jpeg", "progressive-crop", bytes([12, 7, 4, 80, 3, 0, 0, 0]) + jpeg((20, 14), progressive=True, quality=60))
write("jpeg", "subsampled-letterbox", bytes([10, 4, 6, 99, 4, 0, 0, 0]) + jpeg((18, 10), subsampling=2))
write("jpeg", "cmyk-tensorflow", bytes([8, 8, 0, 60, 3, 0x1f, 0, 0]) + jpeg((8, 8), "CMYK"))
write("jpeg", "restart-tensorflow", bytes([5, 5, 0, 87, 3, 0x0b, 0, 0]) + jpeg((24, 16), quality=90))
