import json
import shutil

import orjson
import pytest
import torch

from ember.serve.config import ServeConfig, load_config
from testing.serve import InProcessApp, exported, model_repository


def test_a_version_whose_model_contradicts_its_signature_never_goes_live(tmp_path):
    root = model_repository(tmp_path, ["tiny"])
    broken = root / "tiny" / "2"
    shutil.copytree(exported("text"), broken)  # the text classifier's model.onnx...
    shutil.copy(exported("tiny") / "signature.json", broken / "signature.json")  # ...described as tiny's
    with InProcessApp(root, ServeConfig(poll_seconds=0)) as app:
        status, _, body = app.request("GET", "/v1/models/tiny")
        versions = {v["version"]: v for v in orjson.loads(body)["model_version_status"]}
        assert versions["1"]["state"] == "AVAILABLE"
        assert versions["2"]["state"] == "END" and versions["2"]["status"]["error_message"] == (
            "InconsistentVersion: model.onnx does not match signature.json: inputs: signature.json lists ['input'], "
            "model.onnx has ['input_ids', 'attention_mask']; outputs: signature.json lists ['output'], "
            "model.onnx has ['logits']")
        request = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
        status, _, body = app.request("POST", "/v2/models/tiny/infer", orjson.dumps(request))
        assert (status, orjson.loads(body)["model_version"]) == (200, "1")  # the previous version stays default


@pytest.fixture
def torch_threads():
    """A thread count other than the process's, which is restored afterwards (the setting is process-wide)."""
    before = torch.get_num_threads()
    yield 1 if before > 1 else 2
    torch.set_num_threads(before)


def test_torch_threads_are_the_servers_whichever_model_loads_last(tmp_path, monkeypatch, torch_threads):
    root = tmp_path / "models"
    for name in ("a_onnx", "b_torch", "c_torch", "d_torch_own_threads"):  # loaded in this order
        shutil.copytree(exported("tiny"), root / name / "1")
    config = tmp_path / "serve.json"
    config.write_text(json.dumps({"poll_seconds": 0, "intra_op_threads": torch_threads, "models": {
        "a_onnx": {"runtime": "onnx", "intra_op_threads": 3},  # an ONNX session has threads of its own
        "b_torch": {"runtime": "torch"},
        "c_torch": {"runtime": "torch", "intra_op_threads": torch_threads},
        "d_torch_own_threads": {"runtime": "torch", "intra_op_threads": 3}}}))
    settings, set_num_threads = [], torch.set_num_threads

    def recorded_set_num_threads(count):
        settings.append(count)
        set_num_threads(count)

    monkeypatch.setattr(torch, "set_num_threads", recorded_set_num_threads)

    with InProcessApp(root, load_config(config)) as app:
        assert settings == [torch_threads] and torch.get_num_threads() == torch_threads
        models = app.app.state.dataplane.repository.models
        assert models["a_onnx"].versions[1].runtime._session.get_session_options().intra_op_num_threads == 3
        assert set(models["b_torch"].versions) == set(models["c_torch"].versions) == {1}
        assert models["d_torch_own_threads"].statuses[1].state == "END"
        assert models["d_torch_own_threads"].statuses[1].error == (
            f"ValueError: {root / 'd_torch_own_threads' / '1'}: intra_op_threads 3 for a model on the torch "
            f"runtime, but torch's threads are the whole process's: every torch model runs with the server's "
            f"intra_op_threads ({torch_threads}). Expected the model's setting to be absent or {torch_threads}; "
            f"set it at the config's top level, or serve this model with \"runtime\": \"onnx\", whose sessions "
            f"each have their own threads")
