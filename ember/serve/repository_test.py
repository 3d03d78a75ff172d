import shutil

import orjson

from ember.serve.config import ServeConfig
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
