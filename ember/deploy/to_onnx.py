"""Format "onnx": `model.onnx` (weights inside, dynamic batch), checked by onnx.checker and ONNX Runtime."""
from pathlib import Path

import numpy as np
import onnx
import torch

from ember.deploy.capture import CaptureError, capture, explain, recurrent_loops
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
    placeholders = [f"{_PLACEHOLDER}{i}" for i in range(len(names))]
    try:
        with recurrent_loops():
            torch.onnx.export(program, f=str(path), input_names=inputs.names, output_names=placeholders,
                              opset_version=OPSET, external_data=False, verbose=False)
    except Exception as error:
        raise CaptureError(_explain_conversion(error, type(model).__name__)) from error
    proto = onnx.load(str(path))
    _name_outputs(proto.graph, dict(zip(placeholders, names)))
    _name_dynamic_dims(proto.graph, inputs)
    onnx.save(proto, str(path))
    onnx.checker.check_model(str(path), full_check=True)


_PLACEHOLDER = "ember_output_"


def _name_outputs(graph, names: dict) -> None:
    """Give the outputs their names (placeholder -> name). The exporter names inner values after torch's
    ops ("relu"), and given an output name one of them has (a Keras layer named "relu") it writes both
    under that name, which onnx.checker refuses: such an inner value is renamed first."""
    taken = {name for node in graph.node for name in (*node.input, *node.output)} | \
        {value.name for value in (*graph.input, *graph.initializer)}
    clashing = {name: _unused(f"{name}_inner", taken) for name in names.values() if name in taken}
    if any(value.name in clashing for value in graph.input):
        raise CaptureError(f"an output and an input are both named {sorted(clashing)}: rename one")
    _rename_values(graph, {**clashing, **names})


def _unused(name: str, taken: set) -> str:
    candidate, n = name, 1
    while candidate in taken:
        candidate, n = f"{name}_{n}", n + 1
    taken.add(candidate)
    return candidate


def _rename_values(graph, renames: dict) -> None:
    for node in graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
        node.output[:] = [renames.get(name, name) for name in node.output]
    for value in (*graph.output, *graph.value_info, *graph.initializer):
        value.name = renames.get(value.name, value.name)


def _name_dynamic_dims(graph, inputs: ModelInputs) -> None:
    """The exporter names variable dims after torch's symbols ("s77"); name them "batch" and "sequence"
    ("sequence_2"... for lengths that differ: one name is one size to the runtimes and `ember serve`)
    everywhere the same symbol appears. A dim the model fixed (a converted Keras model's sequence
    length) can come out as the name "12": make it the number."""
    names = {}
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


def ort_session(path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    # The same thread count as eager torch, so the latency comparison is like for like.
    options.intra_op_num_threads = torch.get_num_threads()
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ort_runner(session):
    """numpy inputs dict -> list of outputs, feeding each input in the dtype the model declares."""
    dtypes = input_dtypes(session)

    def run(feeds):
        return session.run(None, {name: np.asarray(value, dtypes[name]) for name, value in feeds.items()})
    return run


def input_dtypes(session) -> dict:
    """{input name: the numpy dtype the model declares}."""
    return {i.name: _numpy_dtype(i.type) for i in session.get_inputs()}


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
