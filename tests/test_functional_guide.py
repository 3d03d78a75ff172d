"""The Keras functional API guide's models, built with ember, go the whole way: fit, save, load in a
process that has only the file (no builder code), export to ONNX, and answer TF Serving requests."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import ember
from testing.functional_guide import EMBER, GUIDE_MODELS, channels_last  # noqa: F401 (autouse)
from ember.serve.config import load_config
from testing.serve import InProcessApp


def _tensors(data):
    return [torch.from_numpy(d) for d in data] if isinstance(data, list) else torch.from_numpy(data)


def _numpy(outputs):
    return {k: v.numpy() for k, v in outputs.items()} if isinstance(outputs, dict) else {"output": outputs.numpy()}


LOAD_AND_PREDICT = """
import sys, numpy as np, torch, ember
model = ember.load(sys.argv[1]).eval()
data = np.load(sys.argv[2])
inputs = [torch.from_numpy(data[k]) for k in sorted(data.files)]
with torch.no_grad():
    out = model(inputs if len(inputs) > 1 else inputs[0])
np.savez(sys.argv[3], **({k: v.numpy() for k, v in out.items()} if isinstance(out, dict) else {"output": out.numpy()}))
"""


@pytest.mark.slow
def test_the_guides_models_train_save_load_export_and_serve(tmp_path):
    rng = np.random.default_rng(0)
    repository, expected, requests = tmp_path / "models", {}, {}
    for name, (build, inputs, targets, loss) in GUIDE_MODELS.items():
        ember.seed(0)
        model = build(EMBER)
        model.compile("adam", loss, lr=1e-2, precision="fp32")
        before = [p.detach().clone() for p in model.parameters()]
        data, labels = inputs(rng), targets(rng)
        history = model.fit(data, labels, epochs=2, batch_size=2, verbose=0)
        assert np.isfinite(history.history["loss"]).all(), name
        assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters())), f"{name} did not train"

        model.eval()
        with torch.no_grad():
            expected[name] = _numpy(model(_tensors(data)))
        model.save(tmp_path / f"{name}.ember")
        listed = data if isinstance(data, list) else [data]
        np.savez(tmp_path / f"{name}-inputs.npz", **{f"i{k}": d for k, d in enumerate(listed)})
        subprocess.run([sys.executable, "-c", LOAD_AND_PREDICT, str(tmp_path / f"{name}.ember"),
                        str(tmp_path / f"{name}-inputs.npz"), str(tmp_path / f"{name}-loaded.npz")], check=True)
        loaded = np.load(tmp_path / f"{name}-loaded.npz")
        for key, values in expected[name].items():
            np.testing.assert_allclose(loaded[key], values, atol=1e-6, err_msg=f"{name} {key} after ember.load")

        report = model.export(repository / name / "1", format="onnx", example=_tensors(data))
        assert report.max_abs_diff <= 1e-4, (name, report)
        names = [entry["name"] for entry in json.loads((repository / name / "1" / "signature.json").read_text())[
            "inputs"]]
        requests[name] = {"inputs": dict(zip(names, (d.tolist() for d in listed)))}

    with InProcessApp(repository, load_config()) as app:
        for name, body in requests.items():
            status, _, answer = app.request("POST", f"/v1/models/{name}:predict", json.dumps(body).encode(),
                                            [("content-type", "application/json")])
            assert status == 200, (name, answer)
            outputs = json.loads(answer)["outputs"]
            outputs = outputs if isinstance(outputs, dict) else {"output": outputs}
            for key, values in expected[name].items():
                assert np.abs(np.asarray(outputs[key]) - values).max() < 1e-4, (name, key)
