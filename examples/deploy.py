"""Seed block "Production Deployment": TorchScript + ONNX (PyTorch), SavedModel + TFLite + TF.js (TensorFlow).

With ember: one file to save and load, and one call per deployment target, each artifact
checked against the eager model. `torch.jit.trace` becomes `format="program"` (torch.export,
TorchScript's successor); `torch.onnx.export` becomes `format="onnx"`; TFLite is `format="tflite"`
(no TensorFlow needed), TF.js becomes `format="web"` (onnxruntime-web), and int8 / ExecuTorch
cover mobile and edge. EMBER_QUICK=1 trains one short epoch and skips the two slowest formats.
"""
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

import ember
from ember.datasets import load_digits
from ember.demo import ConvNet
from ember.deploy.report import print_table

QUICK = os.environ.get("EMBER_QUICK") == "1"
OUT = Path(os.environ.get("EMBER_EXAMPLE_OUT", "out/examples")) / "deploy"

if __name__ == "__main__":
    ember.seed(0)
    (x_train, y_train), (x_val, y_val) = load_digits()
    model = ConvNet()
    model.compile("adamw", lr=2e-3, loss="cross_entropy", metrics=["accuracy"])
    model.fit(x_train[:256] if QUICK else x_train, y_train[:256] if QUICK else y_train, epochs=1 if QUICK else 5,
              verbose=0)

    # Save and load: one file (weights as safetensors, never pickle), rebuilt without your training script.
    model.save(OUT / "model.ember")
    restored = ember.load(OUT / "model.ember")
    assert np.allclose(restored.predict(x_val[:8]), model.predict(x_val[:8]), atol=1e-6)

    # Export: the seed's torch.jit.trace + torch.onnx.export(dynamic_axes=...), and TFLite, TF.js, int8.
    formats = ["onnx", "program", "int8", "web"] + ([] if QUICK else ["tflite", "pte"])
    calibration = x_train[np.random.default_rng(0).permutation(len(x_train))[:256]]
    reports = model.export(OUT / "export", format=formats, example=torch.from_numpy(x_train[:2]),
                           calibration_data=calibration, held_out=(x_val, y_val))
    print_table(reports)

    # Run the artifacts without the ConvNet class: ONNX Runtime, torch.export.load, the int8 .ort file.
    images = x_val[:4]
    onnx_logits = ort.InferenceSession(str(OUT / "export/model.onnx")).run(None, {"input": images})[0]
    program = torch.export.load(str(OUT / "export/model.pt2")).module()
    program_logits = program(torch.from_numpy(images)).detach().numpy()
    int8_logits = ort.InferenceSession(str(OUT / "export/model.int8.ort")).run(None, {"input": images})[0]
    print("labels:", y_val[:4], "onnx:", onnx_logits.argmax(1), "program:", program_logits.argmax(1),
          "int8:", int8_logits.argmax(1))
    if not QUICK:
        from ai_edge_litert.interpreter import Interpreter

        tflite = Interpreter(model_path=str(OUT / "export/model.tflite"))
        tflite.allocate_tensors()
        tflite.set_tensor(tflite.get_input_details()[0]["index"], images[:1])
        tflite.invoke()
        print("tflite:", tflite.get_tensor(tflite.get_output_details()[0]["index"]).argmax(1))
    print(f"browser: python -m http.server -d {OUT / 'export/web'} 8000, then open http://localhost:8000")
