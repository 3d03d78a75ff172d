"""The converters' known chatter, kept out of ember's output.

torch.onnx, torch.export, LiteRT-Torch, TFLite, ExecuTorch and torchao print to the terminal while
they convert or run a model: Python warnings, log records, C++ lines written straight to file
descriptors 1 and 2 (absl, XNNPACK, cpuinfo), a progress tree. None of it is something an export's
user can act on, and it buries ember's report. `converter_output()` runs a block with file
descriptors 1 and 2 sent to a temporary file, then replays what came minus the lines `HARMLESS`
knows; anything else (a real warning, a new message) still reaches the terminal. When the block
fails, everything it printed is replayed, since that is where the converter says why.
"""
import contextlib
import os
import re
import sys
import tempfile
import warnings

HARMLESS = [re.compile(pattern) for pattern in (
    r"torchvision is not installed\. Skipping torchvision::",  # torch.onnx's registry, once per op
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    r"oneDNN custom operations are on",  # TFLite's converter
    r"Failed to load .*torchao[/\\]_C",  # torchao's optional CUDA kernels, on a CPU build
    r"is an Enum subclass and is now natively supported by torch\.compile",  # torch's pytree, from torchao
    r"Estimated count of arithmetic ops",  # TFLite's flatbuffer writer
    r"INFO: Created TensorFlow Lite XNNPACK delegate for CPU",
    r"\[cpuinfo_utils\.cpp:\d+\]",  # ExecuTorch's CPU probe
)]
# Python warnings nobody calling export() can change: torch 2.13's own exporters trip its LeafSpec
# deprecation (a dozen per export), torch's own loop form of LSTM/GRU (capture.recurrent_loops) calls
# its deprecated _check_is_size, and torch.export's archive warns about CPU weights it handles.
IGNORED_WARNINGS = [
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning),
    (r"_check_is_size will be removed", FutureWarning),
    (r"No complete tensor found in the group", UserWarning),
]


@contextlib.contextmanager
def converter_output():
    """Run the block with the converters' known chatter dropped (see the module's docstring)."""
    streams = {1: sys.stdout, 2: sys.stderr}
    for stream in streams.values():
        stream.flush()
    saved = {fd: os.dup(fd) for fd in streams}
    captured = {fd: tempfile.TemporaryFile() for fd in streams}
    failed = False
    try:
        with warnings.catch_warnings(), _environment(LITERT_TORCH_SHOW_PROGRESS="n"):
            for message, category in IGNORED_WARNINGS:
                warnings.filterwarnings("ignore", message, category)
            for fd, file in captured.items():
                os.dup2(file.fileno(), fd)
            yield
    except BaseException:
        failed = True
        raise
    finally:
        for fd, stream in streams.items():
            stream.flush()
            os.dup2(saved[fd], fd)
            os.close(saved[fd])
            captured[fd].seek(0)
            lines = captured[fd].read().decode("utf-8", "replace").splitlines(keepends=True)
            captured[fd].close()
            stream.write("".join(lines if failed else [l for l in lines if not any(p.search(l) for p in HARMLESS)]))
            stream.flush()


@contextlib.contextmanager
def _environment(**variables):
    """Environment variables set for the block (LiteRT-Torch reads its progress switch on each call)."""
    before = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
