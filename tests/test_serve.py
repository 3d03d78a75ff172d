"""`ember serve` end to end: a real server on a loopback port, both protocols over plain HTTP and tritonclient."""
import json
import shutil
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest
import torch

from testing.serve import ServerProcess, TinyClassifier, exported


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    root = tmp_path_factory.mktemp("repository")
    for name in ("tiny", "tiny_torch", "slow"):
        shutil.copytree(exported("tiny"), root / name / "1")
    shutil.copytree(exported("text"), root / "text" / "1")
    config = root.parent / "serve.json"
    config.write_text(json.dumps({
        "max_body_bytes": 65536,
        "models": {"tiny": {"version_labels": {"stable": 1}}, "tiny_torch": {"runtime": "torch"},
                   "slow": {"batching": {"max_batch_size": 4, "max_enqueued_batches": 1,
                                         "batch_timeout_micros": 400_000}}}}))
    return root, config


@pytest.fixture(scope="module")
def server(repository):
    root, config = repository
    with ServerProcess(root, "--config", config) as running:
        yield running


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def expected(x):
    with torch.no_grad():
        return TinyClassifier(0).eval()(torch.as_tensor(x)).numpy()


X = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)


def test_v1_status_and_metadata(http):
    assert http.get("/v1/models/tiny").json() == {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    assert http.get("/v1/models/tiny/versions/1").status_code == 200
    assert http.get("/v1/models/tiny/labels/stable").status_code == 200
    signature = http.get("/v1/models/tiny/metadata").json()["metadata"]["signature_def"]["signature_def"]
    inputs = signature["serving_default"]["inputs"]["input"]
    assert inputs["dtype"] == "DT_FLOAT" and [d["size"] for d in inputs["tensor_shape"]["dim"]] == ["-1", "4"]


@pytest.mark.parametrize("path", ["/v1/models/tiny:predict", "/v1/models/tiny/versions/1:predict",
                                  "/v1/models/tiny/labels/stable:predict", "/v1/models/tiny_torch:predict"])
def test_v1_predict_rows_and_columns(http, path):
    rows = http.post(path, json={"instances": X.tolist()})
    assert rows.status_code == 200, rows.text
    np.testing.assert_allclose(rows.json()["predictions"], expected(X), rtol=1e-4, atol=1e-5)
    named_rows = http.post(path, json={"signature_name": "serving_default",
                                       "instances": [{"input": row} for row in X.tolist()]})
    np.testing.assert_allclose(named_rows.json()["predictions"], expected(X), rtol=1e-4, atol=1e-5)
    columns = http.post(path, json={"inputs": {"input": X.tolist()}})
    np.testing.assert_allclose(columns.json()["outputs"], expected(X), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("body, status, message", [
    (b"{not json", 400, "malformed JSON"),
    (b'{"instances": [[1, 2, 3, 4]], "inputs": [[1, 2, 3, 4]]}', 400, 'exactly one of "instances"'),
    (b'{"instances": [[1, 2, 3]]}', 400, r"expected shape \[-1, 4\].*got \[1, 3\]"),
    (b'{"instances": [[1, 2], [3, 4, 5, 6]]}', 400, "regular shape"),
    (b'{"instances": [["a", "b", "c", "d"]]}', 400, "expected float32 values"),
    (b'{"instances": [[1, 2, 3, 1e39]]}', 400, "finite numbers"),
    (b'{"instances": [[1, 2, 3, NaN]]}', 400, "malformed JSON"),
    (b'{"instances": ["great movie"]}', 400, "raw strings are accepted only by text classifiers"),
    (b'{"signature_name": "other", "instances": [[1, 2, 3, 4]]}', 400, "serving_default"),
    (b'{"instances": []}', 400, "non-empty list"),
])
def test_v1_bad_input_is_named(http, body, status, message):
    response = http.post("/v1/models/tiny:predict", content=body)
    assert response.status_code == status
    assert pytest.importorskip("re").search(message, response.json()["error"]), response.json()


@pytest.mark.parametrize("method, path, status, message", [
    ("GET", "/v1/models/nope", 404, "model 'nope' not found; models served: slow, text, tiny, tiny_torch"),
    ("POST", "/v1/models/tiny/versions/7:predict", 404, "version 7 is not available; versions 1: AVAILABLE"),
    ("POST", "/v1/models/tiny/labels/canary:predict", 404, "no version label 'canary'"),
    ("GET", "/v1/models/tiny/versions/one", 400, "a model version is a non-negative integer (digits only), got 'one'"),
    ("POST", "/v2/models/tiny/versions/one/infer", 400, "non-negative integer (digits only), got 'one'"),
    ("POST", "/v1/models/tiny/versions/+1:predict", 400, "got '+1'"),  # int() would read it as version 1
    ("POST", "/v2/models/tiny/versions/1_0/infer", 400, "got '1_0'"),  # ... and this one as 10
    ("GET", "/v3/nothing", 404, "no route /v3/nothing"),
])
def test_unknown_models_versions_and_routes(http, method, path, status, message):
    response = http.request(method, path, json={"instances": [[1, 2, 3, 4]]})
    assert response.status_code == status and message in response.json()["error"]


def test_openapi_lists_the_400_the_server_answers_not_fastapis_422(http):
    paths = http.get("/openapi.json").json()["paths"]
    operations = [operation for path in paths.values() for operation in path.values()]
    assert all("422" not in operation["responses"] for operation in operations)
    assert "400" in paths["/v2/models/{name}/versions/{version}/infer"]["post"]["responses"]


def test_body_over_the_limit_is_413(http):
    response = http.post("/v1/models/tiny:predict", json={"instances": [[0.5] * 4] * 10_000})
    assert response.status_code == 413 and "65536 bytes" in response.json()["error"]


def test_v2_health_metadata_and_json_infer(http):
    assert http.get("/v2/health/live").json() == {"live": True}
    assert http.get("/v2/health/ready").json() == {"ready": True}
    assert http.get("/v2/models/tiny/ready").json() == {"name": "tiny", "ready": True}
    assert http.get("/v2/models/tiny").json()["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    response = http.post("/v2/models/tiny/versions/1/infer", json={
        "id": "r1", "inputs": [{"name": "input", "shape": [3, 4], "datatype": "FP32", "data": X.ravel().tolist()}]})
    result = response.json()
    assert result["id"] == "r1" and result["outputs"][0]["shape"] == [3, 3]
    np.testing.assert_allclose(np.reshape(result["outputs"][0]["data"], (3, 3)), expected(X), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("inputs, message", [
    ([{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": [1, 2, 3]}], "holds 8 elements, got 3"),
    ([{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}], "missing ['input'], unknown ['x']"),
    ([{"name": "input", "shape": [1, 4], "datatype": "FP8", "data": [1, 2, 3, 4]}], "unknown datatype 'FP8'"),
    ([{"name": "input", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}],
     "binary_data_size 16 does not fit"),
])
def test_v2_bad_input_is_named(http, inputs, message):
    response = http.post("/v2/models/tiny/infer", json={"inputs": inputs})
    assert response.status_code == 400 and message in response.json()["error"], response.text


def test_v2_binary_nan_is_rejected(http):
    header = json.dumps({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32",
                                     "parameters": {"binary_data_size": 16}}]}).encode()
    body = header + np.array([[1, np.nan, 3, 4]], np.float32).tobytes()
    response = http.post("/v2/models/tiny/infer", content=body,
                         headers={"Inference-Header-Content-Length": str(len(header))})
    assert response.status_code == 400 and "NaN or infinity" in response.json()["error"]


def test_tritonclient_binary_and_json(server):
    import tritonclient.http as triton

    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("tiny")
    assert client.get_model_metadata("tiny")["outputs"][0]["name"] == "output"
    for binary in (True, False):
        data = triton.InferInput("input", list(X.shape), "FP32")
        data.set_data_from_numpy(X, binary_data=binary)
        outputs = [triton.InferRequestedOutput("output", binary_data=binary)]
        result = client.infer("tiny", [data], outputs=outputs if not binary else None)
        np.testing.assert_allclose(result.as_numpy("output"), expected(X), rtol=1e-4, atol=1e-5)
    with pytest.raises(triton.InferenceServerException, match="expected shape"):
        bad = triton.InferInput("input", [1, 3], "FP32")
        bad.set_data_from_numpy(np.ones((1, 3), np.float32))
        client.infer("tiny", [bad])
    client.close()


def test_text_classifier_takes_raw_strings(http, server):
    import tritonclient.http as triton

    v1 = http.post("/v1/models/text:predict", json={"instances": ["great movie", "awful boring film"]}).json()
    assert [p["label"] in ("negative", "positive") for p in v1["predictions"]] == [True, True]
    assert all(abs(sum(p["probabilities"]) - 1) < 1e-5 for p in v1["predictions"])
    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    text = triton.InferInput("text", [2], "BYTES")
    text.set_data_from_numpy(np.array([b"great movie", b"awful boring film"], dtype=object))
    result = client.infer("text", [text])
    assert [label.decode() for label in result.as_numpy("label")] == [p["label"] for p in v1["predictions"]]
    np.testing.assert_allclose(result.as_numpy("probabilities"), [p["probabilities"] for p in v1["predictions"]],
                               rtol=1e-5)
    client.close()


def test_metrics_count_requests_errors_and_batches(http):
    http.post("/v1/models/tiny:predict", json={"instances": X.tolist()})
    http.post("/v1/models/tiny:predict", json={"instances": [[1]]})
    text = http.get("/metrics").text
    assert 'ember_requests_total{model="tiny",protocol="v1",version="1"}' in text
    assert 'ember_request_errors_total{code="400",model="tiny",version="1"}' in text
    assert 'ember_batch_size_bucket{le="4.0",model="tiny",version="1"}' in text
    assert 'ember_queue_depth{model="tiny",version="1"} 0.0' in text
    assert "ember_request_latency_seconds_count" in text


def test_full_queue_answers_503(server):
    # "slow" waits 0.4 s to fill a batch of 4 rows and queues at most 4: a second 3-row request is refused.
    results = {}

    def send(key):
        results[key] = httpx.post(f"{server.url}/v1/models/slow:predict", json={"instances": [[1, 2, 3, 4]] * 3},
                                  timeout=30)

    first = threading.Thread(target=send, args=("first",))
    first.start()
    wait_until_queued(server.url, "slow")
    send("second")
    first.join()
    assert results["first"].status_code == 200
    assert results["second"].status_code == 503 and "queue is full" in results["second"].json()["error"]


def wait_until_queued(url, model, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if f'ember_queue_depth{{model="{model}",version="1"}} 0.0' not in httpx.get(f"{url}/metrics").text:
            return
        time.sleep(0.01)
    raise TimeoutError(f"no request reached the {model} queue within {timeout}s")


@pytest.mark.slow
def test_sigterm_finishes_in_flight_requests(repository):
    root, config = repository
    server = ServerProcess(root, "--config", config).wait_ready()
    response = {}
    request = threading.Thread(target=lambda: response.update(r=httpx.post(
        f"{server.url}/v1/models/slow:predict", json={"instances": [[1, 2, 3, 4]]}, timeout=30)))
    request.start()
    wait_until_queued(server.url, "slow")  # the request now waits in the batcher (0.4 s timeout)
    server.process.terminate()
    request.join()
    server.process.wait(30)
    assert response["r"].status_code == 200
    assert server.process.returncode == 0


def test_serving_an_onnx_export_never_imports_torch(tmp_path):
    shutil.copytree(exported("tiny"), tmp_path / "tiny" / "1")
    script = f"""
import contextlib, io, sys
from ember import cli
with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):
    cli.main(["serve", "--help"])  # the command line as `ember serve` parses it
from starlette.testclient import TestClient
from ember.serve.app import create_app
from ember.serve.config import load_config
with TestClient(create_app({str(tmp_path)!r}, load_config(None))) as client:
    reply = client.post("/v1/models/tiny:predict", json={{"instances": [[0.5] * 4]}})
print(reply.status_code, "torch" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["200", "False"], done.stderr[-2000:]
