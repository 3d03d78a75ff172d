"""The demo ConvNet exported in every format, each artifact reloaded without the model class.

One export (module fixture) feeds every test here: it is the slow part (litert-torch's
conversion alone takes tens of seconds on 2 cores).
"""
import json
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest
import torch

import ember
from ember.datasets import load_digits
from ember.demo import ConvNet

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    (x, y), (x_val, y_val) = load_digits()
    ember.seed(0)
    model = ConvNet()
    model.compile(torch.optim.AdamW(model.parameters(), lr=2e-3), loss="cross_entropy", metrics=["accuracy"])
    model.fit(x, y, epochs=3, batch_size=32, verbose=0)
    folder = tmp_path_factory.mktemp("export")
    calibration = x[np.random.default_rng(0).permutation(len(x))[:256]]
    reports = model.export(folder, format="all", example=torch.from_numpy(x[:4]), calibration_data=calibration,
                           held_out=(x_val, y_val))
    model.eval()
    with torch.inference_mode():
        eager = model(torch.from_numpy(x_val)).numpy()
    return {"folder": folder, "reports": {r.format: r for r in reports}, "x_val": x_val, "y_val": y_val,
            "eager": eager}


def test_every_format_is_written_and_matches_eager(exported):
    reports = exported["reports"]
    assert list(reports) == ["onnx", "program", "int8", "tflite", "pte", "web"]
    for name in ("onnx", "program", "tflite", "pte", "web"):
        assert reports[name].max_abs_diff <= 1e-4, (name, reports[name].max_abs_diff)
        assert reports[name].accuracy == reports[name].eager_accuracy, name
    for report in reports.values():
        for file in report.files:
            assert (exported["folder"] / file).exists()
        assert report.latency_ms > 0 and report.eager_latency_ms > 0
    assert reports["tflite"].latency_ms_64 is None and "static batch 1" in reports["tflite"].notes


def test_int8_is_small_and_keeps_accuracy(exported):
    int8 = exported["reports"]["int8"]
    fp32_size = (exported["folder"] / "model.onnx").stat().st_size
    assert (exported["folder"] / "model.int8.onnx").stat().st_size <= 0.30 * fp32_size
    assert int8.eager_accuracy - int8.accuracy <= 0.005


def test_onnx_file_follows_the_contract(exported):
    folder = exported["folder"]
    model = onnx.load(str(folder / "model.onnx"))
    assert not list(folder.glob("*.data"))  # weights inside the file
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert [i.name for i in model.graph.input] == ["input"] and [o.name for o in model.graph.output] == ["output"]
    dims = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in (*model.graph.input, *model.graph.output)]
    assert dims == [["batch", 1, 28, 28], ["batch", 10]]
    signature = json.loads((folder / "signature.json").read_text())
    assert signature == {
        "format": "ember-export", "version": 1,
        "inputs": [{"name": "input", "dtype": "float32", "shape": [-1, 1, 28, 28]}],
        "outputs": [{"name": "output", "dtype": "float32", "shape": [-1, 10]}],
        "task": "image_classification", "labels": [str(i) for i in range(10)], "output_kind": "logits",
        "tokenizer": None}


def test_artifacts_run_in_a_fresh_process_without_the_model_class(exported, tmp_path):
    np.save(tmp_path / "x.npy", exported["x_val"][:5])
    script = textwrap.dedent(f"""
        import sys, numpy as np, torch, onnxruntime as ort
        folder, x = {str(exported["folder"])!r}, np.load({str(tmp_path / "x.npy")!r})
        out = {{}}
        for name in ("model.onnx", "model.int8.onnx", "model.int8.ort", "web/model.onnx"):
            out[name] = ort.InferenceSession(folder + "/" + name, providers=["CPUExecutionProvider"]).run(
                None, {{"input": x}})[0]
        out["model.pt2"] = torch.export.load(folder + "/model.pt2").module()(torch.from_numpy(x)).detach().numpy()
        from ai_edge_litert.interpreter import Interpreter
        tflite = Interpreter(model_path=folder + "/model.tflite"); tflite.allocate_tensors()
        rows = []
        for row in x:
            tflite.set_tensor(tflite.get_input_details()[0]["index"], row[None])
            tflite.invoke(); rows.append(tflite.get_tensor(tflite.get_output_details()[0]["index"])[0])
        out["model.tflite"] = np.stack(rows)
        from executorch.runtime import Runtime
        method = Runtime.get().load_program(folder + "/model.pte").load_method("forward")
        out["model.pte"] = np.concatenate([method.execute([torch.from_numpy(r[None])])[0].numpy() for r in x])
        assert not any(m.startswith("ember") for m in sys.modules), "the artifacts must not need ember"
        np.savez({str(tmp_path / "out.npz")!r}, **out)
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
    outputs = np.load(tmp_path / "out.npz")
    eager = exported["eager"][:5]
    for name in outputs.files:
        tolerance = 0.5 if "int8" in name else 1e-4
        assert np.abs(outputs[name] - eager).max() <= tolerance, name
        if "int8" not in name:
            assert (outputs[name].argmax(1) == eager.argmax(1)).all(), name


def test_web_bundle_predicts_like_eager_in_chromium(exported):
    from testing.browser import bundle_page

    # A confidently classified validation image: the canvas path quantises pixels to 8 bits.
    eager = exported["eager"]
    probabilities = torch.softmax(torch.from_numpy(eager), 1).numpy()
    index = int(np.argmax(probabilities.max(1)))
    pixels = exported["x_val"][index].reshape(-1).tolist()
    with bundle_page(exported["folder"] / "web") as (page, errors):
        result = page.evaluate("async (pixels) => await ember.classify(pixels)", pixels)
        shown = page.get_attribute("#prediction", "data-index")
        canvas = page.evaluate("async (pixels) => { ember.showImage(pixels); return await ember.classifyCanvas(); }",
                               pixels)
    assert not errors
    assert result["index"] == int(eager[index].argmax()) == int(shown)
    assert np.abs(np.array(result["probabilities"]) - probabilities[index]).max() <= 1e-4
    assert canvas["index"] == result["index"]
