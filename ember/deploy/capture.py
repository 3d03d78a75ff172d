"""Capture a model's forward as a graph (torch.export), turning failures into actionable errors.

Every graph exporter starts here: ONNX and `.pt2` from the dynamic-batch capture, TFLite
and ExecuTorch from a static one. A forward that cannot be captured raises `CaptureError`
naming the construct, the line of the user's code that hit it, and a fix.
"""
import contextlib
import re
import traceback
from pathlib import Path

import torch
from torch.fx.experimental.symbolic_shapes import is_concrete_int

from ember.deploy.inputs import ModelInputs

_TORCH_DIR = str(Path(torch.__file__).parent)
_EMBER_DEPLOY_DIR = str(Path(__file__).parent)

# (pattern in the error text, what the construct is, how to fix it)
_KNOWN = [
    (r"data-dependent|GuardOnDataDependent|item\(\)",
     "Python control flow or a shape that depends on a tensor's values (`if x.sum() > 0`, `.item()`, "
     "`range(int(x))`)",
     "use tensor operations (torch.where, masking) or torch.cond instead of Python `if` on tensor values"),
    (r"specialized it to be a constant|Constraints violated \(batch",
     "code that fixes the batch size (e.g. `x.view(64, -1)`)",
     "reshape with `x.flatten(1)` or `x.view(x.size(0), -1)` so any batch size works"),
    (r"\.numpy\(\)|tolist|data pointer|Cannot access storage|tensor subclasses",
     "a conversion of a tensor to numpy or Python data (`.numpy()`, `.tolist()`)",
     "keep the computation in torch operations inside forward"),
]


class CaptureError(RuntimeError):
    """The model's forward cannot be captured as a graph; the message says what and how to fix it."""


def capture(model, inputs: ModelInputs, dynamic: bool = True) -> torch.export.ExportedProgram:
    """torch.export the model in eval mode; `dynamic` makes the batch (and text sequence) variable."""
    if dynamic in inputs.programs:
        return inputs.programs[dynamic]
    example = inputs.at_least_two_rows() if dynamic else inputs
    args, kwargs = example.args_kwargs()
    try:
        with recurrent_loops() if dynamic else contextlib.nullcontext():
            program = torch.export.export(model, args, kwargs, strict=False,
                                          dynamic_shapes=example.dynamic_shapes() if dynamic else None)
    except Exception as error:
        raise CaptureError(explain(error, type(model).__name__)) from error
    if dynamic:
        inputs.fixed_sequence = _sequence_specialized(program, example)
    inputs.programs[dynamic] = program
    return program


@contextlib.contextmanager
def recurrent_loops():
    """Trace torch's LSTM and GRU as a loop rather than unrolled over the example's steps, so that
    their sequence length stays variable (torch.onnx applies the same patches when it captures a
    module itself). Needed again around any later pass that traces the program (the ONNX
    conversion's decompositions). Without them (a torch that lacks this private module) the length
    is fixed, which `_sequence_specialized` reports."""
    try:
        from torch.export._patches import (register_gru_while_loop_decomposition,
                                           register_lstm_while_loop_decomposition)
    except ImportError:
        yield
        return
    operators = (torch.ops.aten.lstm.input, torch.ops.aten.gru.input)
    # The patches swap the operators' Python kernels without clearing the dispatch cache, which keeps
    # the kernel of an earlier trace (an earlier export in this process): cleared going in and out.
    _clear_dispatch_caches(operators)
    try:
        with register_lstm_while_loop_decomposition(), register_gru_while_loop_decomposition():
            yield
    finally:
        _clear_dispatch_caches(operators)


def _clear_dispatch_caches(operators) -> None:
    for operator in operators:
        getattr(operator, "_dispatch_cache", {}).clear()


def _sequence_specialized(program, example: ModelInputs) -> bool:
    """True when a token input's sequence dim was captured as a constant (the model fixes the length)."""
    shapes = {node.name: node.meta["val"].shape for node in program.graph.nodes if node.op == "placeholder"}
    captured = [shapes[name] for name in program.graph_signature.user_inputs]
    return any(1 in example.variable_dims(tensor) and is_concrete_int(shape[1])
               for tensor, shape in zip(example.tensors, captured))


def explain(error: BaseException, model_name: str) -> str:
    text = f"{type(error).__name__}: {error}"
    where = user_code_line(error)
    where = f" at {where}" if where else ""
    for pattern, construct, fix in _KNOWN:
        if re.search(pattern, text):
            return f"cannot capture {model_name}.forward: it uses {construct}{where}. Fix: {fix}."
    first_line = text.strip().splitlines()[0][:300]
    return (f"cannot capture {model_name}.forward{where}: {first_line}. Fix: make forward a pure function of "
            "its tensor inputs (no Python side effects, no numpy, no data-dependent Python control flow), "
            "or try format='program' to see torch.export's full report.")


def user_code_line(error: BaseException) -> str:
    """'file:line: source' of the innermost frame outside torch and ember.deploy, if any."""
    frames = [f for f in traceback.extract_tb(error.__traceback__)
              if not f.filename.startswith((_TORCH_DIR, _EMBER_DEPLOY_DIR))]
    if frames:
        frame = frames[-1]
        return f"{frame.filename}:{frame.lineno}: {(frame.line or '').strip()}"
    match = re.search(r'File "([^"]+)", line (\d+), in \w+\n\s+(.+)', str(error))
    return f"{match.group(1)}:{match.group(2)}: {match.group(3).strip()}" if match else ""
