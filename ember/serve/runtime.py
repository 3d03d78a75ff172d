"""Runtimes: run an exported model on named numpy arrays. ONNX Runtime for model.onnx, torch for model.pt2.

Each runtime also says what its model file declares (`inputs`, `outputs`: TensorSpecs, -1 for a dynamic
dimension; `input_dimension_names`: the symbols of those dimensions), so a version whose file contradicts
its signature.json is refused before it goes live (version_check.py). Once a version has run a batch built
from its signature, a failure on a request's input is that input's doing (InputRejected: the client's
400: a token id out of the embedding, sequences of different lengths), unless the process ran out of
memory (any other exception: the server's 500).
"""
from pathlib import Path

import numpy as np

from ember.serve.errors import last_line
from ember.signature import TensorSpec

RUNTIMES = ("onnx", "torch")
_ONNX_TYPES = {f"tensor({onnx})": np.dtype(numpy) for onnx, numpy in {
    "float": "float32", "double": "float64", "float16": "float16", "bool": "bool", "string": "object",
    **{name: name for name in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")},
}.items()}


class InputRejected(Exception):
    """The model failed on an input that has the signature's names, dtypes and shapes (an index out of an
    embedding's range, a length over the model's bound): the client's mistake."""


def _out_of_memory(error: Exception) -> bool:
    text = str(error).lower()
    return isinstance(error, MemoryError) or "allocat" in text or "out of memory" in text


class OnnxRuntime:
    """One `onnxruntime.InferenceSession`; `run` is safe to call from several threads at once."""

    platform = "onnxruntime_onnx"
    file_name = "model.onnx"
    binds_by_position = False  # inputs are fed by name

    def __init__(self, path: Path, intra_op_threads: int = 0):
        import onnxruntime as ort
        from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument

        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        # Spinning worker threads burn a core between requests; a server is idle between batches.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._output_names = [o.name for o in self._session.get_outputs()]
        # ONNX Runtime's errors of the computation (a node failing, a value invalid for the graph); the others
        # (RuntimeException, EPFail, ...) are the runtime's own.
        self._computation_errors = (Fail, InvalidArgument)
        self.inputs = [_onnx_spec(path, node) for node in self._session.get_inputs()]
        self.outputs = [_onnx_spec(path, node) for node in self._session.get_outputs()]
        self.input_dimension_names = [tuple(d if isinstance(d, str) else None for d in node.shape or ())
                                      for node in self._session.get_inputs()]

    def run(self, inputs: dict) -> dict:
        try:
            return dict(zip(self._output_names, self._session.run(self._output_names, inputs)))
        except self._computation_errors as error:
            if _out_of_memory(error):
                raise
            raise InputRejected(last_line(error)) from error


def _onnx_spec(path: Path, node) -> TensorSpec:
    if node.type not in _ONNX_TYPES:
        raise ValueError(f"{path}: {node.name!r} is a {node.type}, which no request can carry (expected one of "
                         f"{', '.join(_ONNX_TYPES)})")
    # A named (symbolic) or missing dimension is dynamic.
    return TensorSpec(node.name, _ONNX_TYPES[node.type],
                      tuple(d if isinstance(d, int) else -1 for d in node.shape or ()))


class TorchProgramRuntime:
    """A `torch.export` program (model.pt2), called with the inputs in signature order."""

    platform = "torch_export"
    file_name = "model.pt2"
    binds_by_position = True  # inputs are passed in signature order; the program's own names do not matter

    def __init__(self, path: Path, input_names: list, output_names: list, torch_threads: int = 0):
        import torch

        self._torch = torch
        # torch's intra-op threads are the process's, so they are the server's (`torch_threads`, 0: torch's
        # default): the server's first torch model sets them, later ones find them set.
        if torch_threads and torch.get_num_threads() != torch_threads:
            torch.set_num_threads(torch_threads)
        program = torch.export.load(str(path))
        self._module = program.module()
        self._input_names = input_names
        self._output_names = output_names
        placeholders, outputs = _program_tensors(program)
        self.inputs, self.outputs = [_fake_spec(n) for n in placeholders], [_fake_spec(n) for n in outputs]
        self.input_dimension_names = [tuple(None if isinstance(d, int) else str(d) for d in n.meta["val"].shape)
                                      for n in placeholders]

    def run(self, inputs: dict) -> dict:
        torch = self._torch
        try:
            with torch.inference_mode():
                result = self._module(*(torch.from_numpy(inputs[name]) for name in self._input_names))
        # IndexError: a token id out of an embedding; AssertionError: a guard (a length past the program's
        # range); RuntimeError: sizes that do not broadcast, or the allocator
        except (IndexError, AssertionError, RuntimeError, ValueError) as error:
            if _out_of_memory(error):
                raise
            raise InputRejected(last_line(error)) from error
        if isinstance(result, torch.Tensor):
            result = (result,)
        elif isinstance(result, dict):
            result = tuple(result[name] for name in self._output_names)
        return {name: tensor.numpy() for name, tensor in zip(self._output_names, result)}


def _program_tensors(program) -> tuple:
    """The graph nodes of the program's user inputs and outputs (named as in the program: positions matter
    here, the runtime passes inputs in signature order)."""
    from torch.export.graph_signature import InputKind

    user_inputs = {spec.arg.name for spec in program.graph_signature.input_specs if spec.kind == InputKind.USER_INPUT}
    placeholders = [node for node in program.graph.nodes if node.op == "placeholder" and node.name in user_inputs]
    output_node = next(node for node in program.graph.nodes if node.op == "output")
    user_outputs = {spec.arg.name for spec in program.graph_signature.output_specs
                    if spec.kind.name == "USER_OUTPUT" and hasattr(spec.arg, "name")}
    outputs = [node for node in output_node.args[0] if getattr(node, "name", None) in user_outputs]
    return placeholders, outputs


def _fake_spec(node) -> TensorSpec:
    import torch

    value = node.meta.get("val")
    try:
        dtype = torch.empty(0, dtype=value.dtype).numpy().dtype
    except (AttributeError, TypeError):  # not a tensor, or a dtype numpy lacks (bfloat16)
        raise ValueError(f"model.pt2: {node.name!r} is a {getattr(value, 'dtype', type(value).__name__)}, which no "
                         f"request can carry (expected a tensor of a numpy dtype)") from None
    # A symbolic (SymInt) dimension is dynamic.
    return TensorSpec(node.name, dtype, tuple(d if isinstance(d, int) else -1 for d in value.shape))


_FILES = {"onnx": OnnxRuntime.file_name, "torch": TorchProgramRuntime.file_name}


def load_runtime(folder: Path, signature, runtime: str | None = None, intra_op_threads: int = 0,
                 torch_threads: int = 0):
    """The runtime asked for, else ONNX Runtime when model.onnx exists, else torch for model.pt2.

    intra_op_threads: the model's; each ONNX Runtime session has its own pool of them (0: it decides).
    torch_threads: the server's intra_op_threads. torch's threads are one setting for the whole process, so
    every torch model runs with the server's; a torch model asking for others is refused (ValueError)."""
    folder = Path(folder)
    if runtime is None:
        runtime = "onnx" if (folder / _FILES["onnx"]).is_file() else "torch"
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")
    path = folder / _FILES[runtime]
    if not path.is_file():
        found = sorted(p.name for p in folder.iterdir())
        raise FileNotFoundError(f"{folder} has no {_FILES[runtime]} for the {runtime} runtime (found: {found})")
    if runtime == "onnx":
        return OnnxRuntime(path, intra_op_threads)
    if intra_op_threads != torch_threads:
        raise ValueError(f"{folder}: intra_op_threads {intra_op_threads} for a model on the torch runtime, but "
                         f"torch's threads are the whole process's: every torch model runs with the server's "
                         f"intra_op_threads ({torch_threads}). Expected the model's setting to be absent or "
                         f"{torch_threads}; set it at the config's top level, or serve this model with "
                         f"\"runtime\": \"onnx\", whose sessions each have their own threads")
    return TorchProgramRuntime(path, signature.input_names, signature.output_names, torch_threads)
