"""A functional model with two named inputs and two named outputs, exported and served: TF Serving's
`inputs` (columns) and `instances` (rows of dicts) and KServe v2's named tensors, on ONNX Runtime and on
the torch runtime."""
import json
import shutil

import httpx
import numpy as np
import pytest
import torch

import ember
from ember import layers
from testing.serve import ServerProcess


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    ember.seed(0)
    image, features = ember.Input((4, 4, 1), name="image"), ember.Input((3,), name="features")
    x = layers.Flatten()(layers.Conv2D(2, 3, data_format="channels_last")(image))
    joined = layers.concatenate([x, layers.Dense(4, activation="relu")(features)])
    model = ember.Model([image, features], {"label": layers.Dense(3)(joined), "value": layers.Dense(1)(joined)})
    root = tmp_path_factory.mktemp("repository")
    model.export(root / "two" / "1", format=["onnx", "program"],
                 example=[torch.randn(2, 4, 4, 1), torch.randn(2, 3)])
    shutil.copytree(root / "two", root / "two_torch")
    config = root.parent / "serve.json"
    config.write_text(json.dumps({"models": {"two_torch": {"runtime": "torch"}}}))
    with ServerProcess(root, "--config", config) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        yield model.eval(), http


def _expected(model, image, features):
    with torch.no_grad():
        out = model([torch.from_numpy(image), torch.from_numpy(features)])
    return {name: tensor.numpy() for name, tensor in out.items()}


RNG = np.random.default_rng(0)
IMAGE, FEATURES = RNG.normal(size=(3, 4, 4, 1)).astype("float32"), RNG.normal(size=(3, 3)).astype("float32")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["two", "two_torch"])
def test_tf_serving_columns_and_rows_of_named_inputs(served, name):
    model, http = served
    expected = _expected(model, IMAGE, FEATURES)
    columns = http.post(f"/v1/models/{name}:predict",
                        json={"inputs": {"image": IMAGE.tolist(), "features": FEATURES.tolist()}})
    assert columns.status_code == 200, columns.text
    outputs = columns.json()["outputs"]
    for key in ("label", "value"):
        assert np.abs(np.asarray(outputs[key]) - expected[key]).max() < 1e-4
    rows = http.post(f"/v1/models/{name}:predict",
                     json={"instances": [{"image": i.tolist(), "features": f.tolist()} for i, f in zip(IMAGE, FEATURES)]})
    assert rows.status_code == 200, rows.text
    predictions = rows.json()["predictions"]
    assert np.abs(np.asarray([p["label"] for p in predictions]) - expected["label"]).max() < 1e-4
    missing = http.post(f"/v1/models/{name}:predict", json={"inputs": {"image": IMAGE.tolist()}})
    assert missing.status_code == 400 and "features" in missing.text


@pytest.mark.slow
@pytest.mark.parametrize("name", ["two", "two_torch"])
def test_kserve_v2_named_tensors_in_and_out(served, name):
    model, http = served
    expected = _expected(model, IMAGE, FEATURES)
    body = {"inputs": [{"name": "image", "shape": list(IMAGE.shape), "datatype": "FP32", "data": IMAGE.ravel().tolist()},
                       {"name": "features", "shape": list(FEATURES.shape), "datatype": "FP32",
                        "data": FEATURES.ravel().tolist()}]}
    answer = http.post(f"/v2/models/{name}/infer", json=body)
    assert answer.status_code == 200, answer.text
    outputs = {o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in answer.json()["outputs"]}
    assert set(outputs) == {"label", "value"}
    for key in outputs:
        assert np.abs(outputs[key] - expected[key]).max() < 1e-4
    metadata = http.get(f"/v2/models/{name}").json()
    assert [i["name"] for i in metadata["inputs"]] == ["image", "features"]
