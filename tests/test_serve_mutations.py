"""Fuzzing ember serve's readers (#16): TF Serving REST and KServe v2 request bodies and headers, called
in-process (InProcessApp: the ASGI app on one event loop, no socket), and the signature.json reader, fed
hypothesis-drawn mutations of valid requests and files.

Mutations: JSON members deleted, duplicated (the same key twice in the text) or added, values replaced by
other types, by 0, -1, 2**63, -2**63, 2**64, shapes of 70 dimensions or [0, 2**62, 2**62]; lists'
elements repeated; then, sometimes, the body's bytes truncated, bit-flipped, set to 0x00/0xff, a chunk
repeated or dropped; headers: Inference-Header-Content-Length and Content-Length set to 0, -1, 2**63,
off by one, "²", " 12", "0x10", dropped or given twice; a Content-Encoding.

What must hold for every mutation: a request is answered 200 or a 4xx whose body is {"error": message},
never a 5xx, and nothing is logged at ERROR or with a traceback; the signature reader returns a
well-formed Signature or raises ValueError naming the file; and the Python memory either allocates
(tracemalloc's peak: Python objects and numpy arrays) stays within MEMORY_PER_INPUT_BYTE times the input
plus MEMORY_ALLOWANCE.

EMBER_FUZZ_EXAMPLES sets the mutations per reader (default: a few seconds' worth each; 20000 for a
thorough run). The examples are derandomized: the same mutations every run.
"""
import copy
import json
import logging
import os
import struct
import time
import tracemalloc

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ember.serve.batching import BatchingOptions
from ember.serve.config import ModelConfig, ServeConfig
from ember.signature import Signature, load_signature
from ember.untrusted import is_int
from testing.serve import InProcessApp, exported, model_repository

EXAMPLES = int(os.environ.get("EMBER_FUZZ_EXAMPLES", "500"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                suppress_health_check=list(HealthCheck))
# JSON is parsed into Python objects: a 4-byte "[1]," becomes a 64-byte list, so about 20x the body,
# plus the arrays made from it; small requests allocate responses, metrics and event-loop bookkeeping.
MEMORY_PER_INPUT_BYTE = 40
MEMORY_ALLOWANCE = 1 << 20

# --- valid requests, the seeds of every mutation ------------------------------------------------------
X = [[0.1, 0.2, 0.3, 0.4], [1, 2, 3, 4]]
TEXTS = [b"great movie", b"awful boring film"]
V1_SEEDS = [
    ("/v1/models/tiny:predict", {"instances": X}),
    ("/v1/models/tiny/versions/1:predict", {"signature_name": "serving_default", "inputs": {"input": X}}),
    ("/v1/models/tiny:predict", {"instances": [{"input": row} for row in X]}),
    ("/v1/models/text:predict", {"instances": [t.decode() for t in TEXTS]}),
    ("/v1/models/text:predict", {"inputs": {"input_ids": [[2, 3]], "attention_mask": [[1, 1]]}}),
]
PACKED_TEXTS = b"".join(struct.pack("<I", len(t)) + t for t in TEXTS)
V2_SEEDS = [  # (path, JSON header, binary tensors that follow it)
    ("/v2/models/tiny/infer", {"id": "r", "inputs": [
        {"name": "input", "shape": [2, 4], "datatype": "FP32", "data": sum(X, [])}], "outputs": [{"name": "output"}]},
     b""),
    ("/v2/models/tiny/infer", {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": X[0]}]}, b""),
    ("/v2/models/tiny/versions/1/infer", {"inputs": [
        {"name": "input", "shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": 32}}],
        "parameters": {"binary_data_output": True}}, np.array(X, np.float32).tobytes()),
    ("/v2/models/text/infer", {"inputs": [
        {"name": "text", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": len(PACKED_TEXTS)}}]},
     PACKED_TEXTS),
    ("/v2/models/text/infer", {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["great"]}]}, b""),
    ("/v2/models/text/infer", {"inputs": [
        {"name": "input_ids", "shape": [1, 2], "datatype": "INT64", "data": [2, 3]},
        {"name": "attention_mask", "shape": [1, 2], "datatype": "INT64", "parameters": {"binary_data_size": 16}}],
        "outputs": [{"name": "logits", "parameters": {"binary_data": True}}]}, np.ones(2, np.int64).tobytes()),
]


# --- mutations ------------------------------------------------------------------------------------------
ODD_VALUES = st.sampled_from([0, -1, 1, 2 ** 63, -2 ** 63, 2 ** 64, 2 ** 31, 1.5, 1e308, -0.0, "", "x", "²", "FP32",
                              "BYTES", "INT64", None, True, False, [], {}, [[]], [0, 2 ** 62, 2 ** 62], [1] * 70,
                              [True, 4], ["a"] * 3, {"binary_data_size": 2 ** 63}])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8) | ODD_VALUES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6)
MEMBER_NAMES = st.sampled_from(["inputs", "instances", "outputs", "data", "shape", "datatype", "name", "parameters",
                                "binary_data_size", "binary_data", "binary_data_output", "id", "signature_name"])


def _paths(value, prefix=()):
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield prefix + (key,)
        yield from _paths(child, prefix + (key,))


@st.composite
def mutated_json(draw, document) -> bytes:
    """The document with 0-3 structural changes, as JSON text (stdlib json: it writes integers past 64 bits)."""
    document = json.loads(json.dumps(document))
    duplicate = None
    for _ in range(draw(st.integers(0, 3))):
        paths = list(_paths(document))
        if not paths:
            break
        *parents, key = draw(st.sampled_from(paths))
        parent = document
        for step in parents:
            parent = parent[step]
        operation = draw(st.sampled_from(["delete", "replace", "odd", "repeat", "add", "duplicate"]))
        if operation == "delete":
            del parent[key]
        elif operation == "replace":  # copies: ODD_VALUES' lists and dicts are shared by every example
            parent[key] = copy.deepcopy(draw(JSON_VALUES))
        elif operation == "odd":
            parent[key] = copy.deepcopy(draw(ODD_VALUES))
        elif operation == "repeat" and isinstance(parent[key], list) and parent[key]:
            parent[key] = parent[key] * draw(st.sampled_from([2, 3, 100]))
        elif operation == "add" and isinstance(parent[key], dict):
            parent[key][draw(MEMBER_NAMES)] = copy.deepcopy(draw(JSON_VALUES))
        elif operation == "duplicate" and isinstance(document, dict) and document:
            duplicate = (draw(st.sampled_from(sorted(document))), draw(JSON_VALUES))
    text = json.dumps(document)
    if duplicate is not None and text.endswith("}"):  # the same member twice in the text
        text = text[:-1] + f", {json.dumps(duplicate[0])}: {json.dumps(duplicate[1])}}}"
    return text.encode()


ODD_SHAPES = st.sampled_from([[True, 4], [1, True], [1] * 70, [0, 2 ** 62, 2 ** 62], [2 ** 63, 0], [0, 4], [4, 0],
                              [1, 4, 1], [4], [], [1.0, 4], [-1, 4], [2, 2], [1, 2 ** 31], [2 ** 64, 4], [1, 4, 0]])


@st.composite
def reshaped(draw, document: dict) -> dict:
    """Sometimes one v2 input declares an odd shape, its "data" refilled to hold as many elements, so the
    request gets past the element count to whatever reads the shape next."""
    inputs = document.get("inputs")
    if draw(st.booleans()) or not isinstance(inputs, list) or not inputs:
        return document
    document = copy.deepcopy(document)
    entry = document["inputs"][draw(st.integers(0, len(inputs) - 1))]
    entry["shape"] = shape = draw(ODD_SHAPES)
    count = 1
    for d in shape:
        count *= d if isinstance(d, int) and d >= 0 else 1
    if "data" in entry:
        entry["data"] = [1] * count if count <= 4096 else []
    elif "parameters" in entry and count <= 4096:
        entry["parameters"]["binary_data_size"] = 4 * count
    return document


@st.composite
def mutated_bytes(draw, data: bytes) -> bytes:
    """Usually `data` as it is; else truncated, bit-flipped, bytes set to 0x00/0xff, a chunk repeated or dropped."""
    if not data or draw(st.integers(0, 3)) > 0:
        return data
    data = bytearray(data)
    operation = draw(st.sampled_from(["truncate", "flip", "fill", "repeat", "drop"]))
    at = draw(st.integers(0, len(data) - 1))
    if operation == "truncate":
        return bytes(data[:at])
    if operation == "flip":
        data[at] ^= 1 << draw(st.integers(0, 7))
    elif operation == "fill":
        data[at:at + 8] = bytes([draw(st.sampled_from([0, 0xFF]))]) * 8
    else:
        end = draw(st.integers(at, len(data)))
        data[at:at] = data[at:end] if operation == "repeat" else b""
        if operation == "drop":
            del data[at:end]
    return bytes(data)


def odd_numbers(correct: int):
    return st.sampled_from([str(correct), "0", "-1", str(2 ** 63), str(correct + 1), str(max(correct - 1, 0)), "²",
                            " 12", "0x10", "", f"{correct}0", "1e3"])


@st.composite
def mutated_headers(draw, header_length: int | None, body_length: int) -> list:
    headers = []
    if header_length is not None and draw(st.integers(0, 5)):  # sometimes dropped
        value = str(header_length) if draw(st.booleans()) else draw(odd_numbers(header_length))
        headers += [("Inference-Header-Content-Length", value)] * draw(st.sampled_from([1, 1, 2]))
    if draw(st.integers(0, 3)) == 0:
        headers.append(("Content-Length", draw(odd_numbers(body_length))))
    if draw(st.integers(0, 9)) == 0:
        headers.append(("Content-Encoding", draw(st.sampled_from(["gzip", "identity", "", "²"]))))
    # As a client's bytes: latin-1 where it can ("²" is b"\\xb2", which the server reads back as "²").
    return [(name, value.encode("latin-1", errors="ignore") or value.encode()) for name, value in headers]


@st.composite
def v1_requests(draw) -> tuple:
    path, document = draw(st.sampled_from(V1_SEEDS))
    body = draw(mutated_bytes(draw(mutated_json(document))))
    return path, body, draw(mutated_headers(None, len(body)))


@st.composite
def v2_requests(draw) -> tuple:
    path, document, tensors = draw(st.sampled_from(V2_SEEDS))
    header = draw(mutated_json(draw(reshaped(document))))
    body = draw(mutated_bytes(header + draw(mutated_bytes(tensors))))
    return path, body, draw(mutated_headers(len(header) if tensors else None, len(body)))


# --- the oracle -------------------------------------------------------------------------------------------
class LoggedProblems(logging.Handler):
    """Every record at ERROR or above, or carrying a traceback, from any logger."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        if record.levelno >= logging.ERROR or record.exc_info:
            self.records.append(f"{record.name}: {record.getMessage()}")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    no_waiting = ModelConfig(batching=BatchingOptions(enabled=False))  # each request runs at once
    config = ServeConfig(poll_seconds=0, max_body_bytes=1 << 20, defaults=no_waiting)
    with InProcessApp(model_repository(tmp_path_factory.mktemp("models")), config) as app:
        yield app


@pytest.fixture
def logged():
    handler = LoggedProblems()
    logging.getLogger().addHandler(handler)
    yield handler.records
    logging.getLogger().removeHandler(handler)


def allocated_by(call, *args):
    """(call's result, the most Python memory it allocated and held at once). Traced only during the call:
    tracing hypothesis' own allocations would cost more than everything else."""
    tracemalloc.start()
    try:
        result = call(*args)
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def answer_is_a_client_error_or_success(app, logged, path, body, headers):
    logged.clear()  # this request's records only
    (status, _, answer), allocated = allocated_by(app.request, "POST", path, body, headers)
    case = f"POST {path} headers={headers} body={body[:300]!r}{'...' if len(body) > 300 else ''}"
    assert status == 200 or 400 <= status < 500, f"{status} {answer[:500]!r} for {case}"
    if status != 200:
        error = orjson.loads(answer)["error"]
        assert isinstance(error, str) and error, case
    assert not logged, f"{logged} for {case}"
    assert allocated <= MEMORY_PER_INPUT_BYTE * len(body) + MEMORY_ALLOWANCE, f"{allocated} bytes for {case}"
    return status


def fuzz(reader: str, requests, check):
    statuses, started = [], time.perf_counter()

    @FUZZ
    @given(requests)
    def one(case):
        statuses.append(check(*case))

    one()
    seconds = time.perf_counter() - started
    print(f"\n{reader}: {len(statuses)} mutations in {seconds:.1f} s ({len(statuses) / seconds:.0f}/s), "
          f"{statuses.count(200)} answered 200")


# --- the tests --------------------------------------------------------------------------------------------
def test_tf_serving_rest_bodies_and_headers(app, logged):
    fuzz("TF Serving REST", v1_requests(),
         lambda path, body, headers: answer_is_a_client_error_or_success(app, logged, path, body, headers))


def test_kserve_v2_bodies_and_headers(app, logged):
    fuzz("KServe v2", v2_requests(),
         lambda path, body, headers: answer_is_a_client_error_or_success(app, logged, path, body, headers))


@st.composite
def signature_files(draw) -> bytes:
    seed = (exported(draw(st.sampled_from(["tiny", "text"]))) / "signature.json").read_text()
    return draw(mutated_bytes(draw(mutated_json(json.loads(seed)))))


def test_signature_json_reader(tmp_path, logged):
    path = tmp_path / "signature.json"

    def read(content: bytes):
        path.write_bytes(content)
        try:
            signature, allocated = allocated_by(load_signature, tmp_path)
        except ValueError as error:
            assert str(path) in str(error), error  # names the file
            return "refused"
        assert isinstance(signature, Signature)
        for spec in signature.inputs + signature.outputs:
            assert isinstance(spec.name, str) and isinstance(spec.dtype, np.dtype)
            assert 1 <= len(spec.shape) and all(is_int(d) and d >= -1 for d in spec.shape)
        assert allocated <= MEMORY_PER_INPUT_BYTE * len(content) + MEMORY_ALLOWANCE
        return 200

    fuzz("signature.json", signature_files().map(lambda content: (content,)), read)
