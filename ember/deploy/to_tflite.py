"""Format "tflite": a TensorFlow Lite / LiteRT flatbuffer through litert-torch, no TensorFlow needed.

The batch is static (the mobile case: one input at a time), run in ai_edge_litert's interpreter.
"""
from pathlib import Path

import numpy as np
import torch

from ember.deploy.capture import CaptureError, explain
from ember.deploy.extras import require
from ember.deploy.inputs import ModelInputs
from ember.deploy.report import EagerBaseline, ExportReport

FORMAT = "tflite"
FILE = "model.tflite"


def export(model, directory: Path, inputs: ModelInputs, baseline: EagerBaseline, calibration_data=None) -> ExportReport:
    litert_torch = require("litert_torch", FORMAT, "litert")
    interpreter_module = require("ai_edge_litert.interpreter", FORMAT, "litert")
    path = Path(directory) / FILE
    args, kwargs = inputs.rows(0, 1).args_kwargs()
    try:
        litert_torch.convert(model, args, kwargs or None).export(str(path))
    except Exception as error:
        raise CaptureError(explain(error, type(model).__name__).replace("cannot capture", "cannot convert to TFLite",
                                                                        1)) from error
    interpreter = interpreter_module.Interpreter(model_path=str(path), num_threads=torch.get_num_threads())
    interpreter.allocate_tensors()
    # litert-torch keeps the forward's argument order; the flatbuffer's own tensor names are generated.
    input_details = interpreter.get_input_details()
    output_indices = [d["index"] for d in interpreter.get_output_details()]

    def run(feeds):
        for detail, value in zip(input_details, feeds.values()):
            interpreter.set_tensor(detail["index"], np.asarray(value, detail["dtype"]))
        interpreter.invoke()
        return [interpreter.get_tensor(i).copy() for i in output_indices]
    return baseline.report(FORMAT, directory, [FILE], run, static_batch=1, notes=["ai_edge_litert"])
