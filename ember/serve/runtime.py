"""Runtimes: run an exported model on named numpy arrays. ONNX Runtime for model.onnx, torch for model.pt2."""
from pathlib import Path

RUNTIMES = ("onnx", "torch")
_FILES = {"onnx": "model.onnx", "torch": "model.pt2"}


class OnnxRuntime:
    """One `onnxruntime.InferenceSession`; `run` is safe to call from several threads at once."""

    platform = "onnxruntime_onnx"

    def __init__(self, path: Path, intra_op_threads: int = 0):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        # Spinning worker threads burn a core between requests; a server is idle between batches.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._output_names = [o.name for o in self._session.get_outputs()]

    def run(self, inputs: dict) -> dict:
        return dict(zip(self._output_names, self._session.run(self._output_names, inputs)))


class TorchProgramRuntime:
    """A `torch.export` program (model.pt2), called with the inputs in signature order."""

    platform = "torch_export"

    def __init__(self, path: Path, input_names: list, output_names: list, intra_op_threads: int = 0):
        import torch

        self._torch = torch
        if intra_op_threads:
            torch.set_num_threads(intra_op_threads)
        self._module = torch.export.load(str(path)).module()
        self._input_names = input_names
        self._output_names = output_names

    def run(self, inputs: dict) -> dict:
        torch = self._torch
        with torch.inference_mode():
            result = self._module(*(torch.from_numpy(inputs[name]) for name in self._input_names))
        if isinstance(result, torch.Tensor):
            result = (result,)
        elif isinstance(result, dict):
            result = tuple(result[name] for name in self._output_names)
        return {name: tensor.numpy() for name, tensor in zip(self._output_names, result)}


def load_runtime(folder: Path, signature, runtime: str | None = None, intra_op_threads: int = 0):
    """The runtime asked for, else ONNX Runtime when model.onnx exists, else torch for model.pt2."""
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
    return TorchProgramRuntime(path, signature.input_names, signature.output_names, intra_op_threads)

