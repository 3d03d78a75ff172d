"""Format "onnx": `model.onnx` (weights inside, dynamic batch), checked by onnx.checker and ONNX Runtime."""
from pathlib import Path

import numpy as np
import onnx
import torch

from ember.deploy.capture import CaptureError, capture, explain
from ember.deploy.inputs import ModelInputs, output_names
from ember.deploy.report import EagerBaseline, ExportReport

FORMAT = "onnx"
FILE = "model.onnx"
OPSET = 20  # the dynamo exporter's default; >= 17 is what ONNX Runtime's CPU kernels and the web runtime need


def export(model, directory: Path, inputs: ModelInputs, baseline: EagerBaseline, calibration_data=None) -> ExportReport:
    path = Path(directory) / FILE
    if not path.exists():  # the int8 or web exporter may have written it already in this export
        write_onnx(model, inputs, path)
    session = ort_session(path)
    return baseline.report(FORMAT, directory, [FILE], ort_runner(session), notes=[f"opset {OPSET}, ONNX Runtime"])


def write_onnx(model, inputs: ModelInputs, path: Path) -> None:
    program = capture(model, inputs)
    with torch.inference_mode():
        names = output_names(inputs.call(model), model)
    try:
        torch.onnx.export(program, f=str(path), input_names=inputs.names, output_names=names, opset_version=OPSET,
                          external_data=False, verbose=False)
    except Exception as error:
        raise CaptureError(_explain_conversion(error, type(model).__name__)) from error
    _name_dynamic_dims(path, inputs)
    onnx.checker.check_model(str(path), full_check=True)


def _name_dynamic_dims(path: Path, inputs: ModelInputs) -> None:
    """The exporter names variable dims after torch's symbols ("s77"); name them "batch" and "sequence"
    ("sequence_2"... for lengths that differ: one name is one size to the runtimes and `ember serve`)
    everywhere the same symbol appears. A dim the model fixed (a converted Keras model's sequence
    length) can come out as the name "12": make it the number."""
    proto = onnx.load(str(path))
    graph, names = proto.graph, {}
    for value, tensor in zip(graph.input, inputs.tensors):
        for axis in inputs.variable_dims(tensor):
            symbol = value.type.tensor_type.shape.dim[axis].dim_param
            if symbol and symbol not in names:
                lengths = sum(name != "batch" for name in names.values())
                names[symbol] = "batch" if axis == 0 else "sequence" + (f"_{lengths + 1}" if lengths else "")
    for value in (*graph.input, *graph.output, *graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in names:
                dim.dim_param = names[dim.dim_param]
            elif dim.dim_param.isdigit():
                dim.dim_value = int(dim.dim_param)
    onnx.save(proto, str(path))


def ort_session(path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    # The same thread count as eager torch, so the latency comparison is like for like.
    options.intra_op_num_threads = torch.get_num_threads()
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ort_runner(session):
    """numpy inputs dict -> list of outputs, feeding each input in the dtype the model declares."""
    dtypes = {i.name: _numpy_dtype(i.type) for i in session.get_inputs()}

    def run(feeds):
        return session.run(None, {name: np.asarray(value, dtypes[name]) for name, value in feeds.items()})
    return run


def _numpy_dtype(onnx_type: str):
    return {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32,
            "tensor(bool)": np.bool_, "tensor(double)": np.float64, "tensor(float16)": np.float16}[onnx_type]


def _explain_conversion(error, model_name):
    import re

    ops = sorted(set(re.findall(r"aten[.:]+\w+(?:\.\w+)?", str(error))))
    if ops:
        return (f"cannot convert {model_name} to ONNX: no ONNX translation for {', '.join(ops)}. Fix: replace the "
                "operation with supported ones, or use format='program' (torch.export), which keeps every aten "
                "operation.")
    return explain(error, model_name).replace("cannot capture", "cannot convert to ONNX", 1)
