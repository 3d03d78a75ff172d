"""`ember.deploy.export`: one call, every deployment format, each artifact checked against eager.

Each format is a module `ember.deploy.to_<format>` with the same function

    export(model, directory, inputs, baseline, calibration_data) -> ExportReport

which writes its files into `directory`, reloads them without the model's class, and lets
`baseline` compare and time them. This function stages every format in a temporary folder
beside `path` and moves the files in only when all of them succeeded, so a failure leaves
whatever `path` held untouched.
"""
import importlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from ember.deploy.capture import capture
from ember.deploy.inputs import ModelInputs, output_list, output_names
from ember.deploy.quiet import converter_output
from ember.deploy.report import EagerBaseline, ExportReport
from ember.deploy.signature import build_signature
from ember.signature import SIGNATURE_FILE, write_signature

FORMATS = ("onnx", "program", "int8", "tflite", "pte", "web")
STATIC_FORMATS = ("tflite", "pte")  # captured at batch 1; the others share the dynamic capture
HELD_OUT_ROWS = 64  # random held-out rows when none are given


def export(model, path, format="onnx", example=None, calibration_data=None, held_out=None, signature=None,
           extra_files=None):
    """Export `model` into the folder `path`; returns an ExportReport (a list of them for several formats).

    format: one of "onnx", "program", "int8", "tflite", "pte", "web", a list of them, a comma-separated
        string, or "all".
    example: a batch of inputs (tensor, tuple or dict of tensors) shaped like real data.
    calibration_data: a sample of training inputs, needed by "int8".
    held_out: inputs, or `(inputs, labels)`, the artifacts are compared on (default: random rows).
    signature: overrides for signature.json's "task", "labels", "output_kind", "tokenizer".
    extra_files: {name: bytes or source path} copied into the folder (e.g. a tokenizer.json).
    """
    formats = _parse_formats(format)
    inputs = ModelInputs.from_example(model, example)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            raw_outputs = _run_example(model, inputs)
        outputs, names = [o.float().cpu().numpy() for o in output_list(raw_outputs)], output_names(raw_outputs, model)
        held, labels = _held_out(inputs, held_out)
        calibration = _calibration(inputs, calibration_data)
        if "int8" in formats:  # fail before the slow formats run
            _exporter("int8").require_calibration(inputs, calibration)
        baseline = EagerBaseline(model, held, labels)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".export", dir=path.parent))
        try:
            with converter_output():
                if any(name not in STATIC_FORMATS for name in formats):
                    capture(model, inputs)  # first: it settles which dims are variable, as signature.json records
                write_signature(staging, **build_signature(inputs, names, outputs, signature))
                extras = _write_extra_files(staging, extra_files)
                reports = [_exporter(name).export(model, staging, inputs, baseline, calibration) for name in formats]
            _promote(staging, path, [f for r in reports for f in r.files] + [SIGNATURE_FILE] + extras)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        model.train(was_training)
    return reports[0] if isinstance(format, str) and len(reports) == 1 else reports


def _parse_formats(format) -> list:
    names = format.split(",") if isinstance(format, str) else list(format)
    names = list(FORMATS) if names == ["all"] else [n.strip().lower() for n in names]
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        raise ValueError(f"unknown export format {unknown or format!r}; choose from {', '.join(FORMATS)} or 'all'")
    return list(dict.fromkeys(names))


def _exporter(name):
    return importlib.import_module(f"ember.deploy.to_{name}")


def _run_example(model, inputs: ModelInputs):
    try:
        return inputs.call(model)
    except Exception as error:
        shapes = ", ".join(f"{n} {tuple(t.shape)}" for n, t in zip(inputs.names, inputs.tensors))
        expected = getattr(model, "input_shape", None)
        hint = f" (the model expects (batch, {', '.join(map(str, expected))}))" if expected else ""
        raise ValueError(f"the example does not fit {type(model).__name__}{hint}: running it on {shapes} "
                         f"failed with {type(error).__name__}: {error}") from error


def _held_out(inputs: ModelInputs, held_out):
    labels = None
    if isinstance(held_out, tuple) and len(held_out) == 2 and not inputs.keyword and len(inputs.tensors) == 1:
        held_out, labels = held_out
        labels = np.asarray(labels)
    if held_out is None:
        # Random floats; ids and other integers drawn from the example's rows (random ones may be out of range).
        generator = torch.Generator().manual_seed(0)
        tensors = [torch.rand(HELD_OUT_ROWS, *t.shape[1:], generator=generator, dtype=t.dtype)
                   if t.is_floating_point() else t[torch.randint(len(t), (HELD_OUT_ROWS,), generator=generator)]
                   for t in inputs.tensors]
        return inputs.with_tensors(tensors), None
    held = inputs.like(held_out, "held_out")
    if labels is not None and len(labels) != held.batch_size:
        raise ValueError(f"held_out has {held.batch_size} inputs but {len(labels)} labels")
    return held, labels


def _calibration(inputs: ModelInputs, calibration_data):
    return None if calibration_data is None else inputs.like(calibration_data, "calibration_data")


def _write_extra_files(staging: Path, extra_files) -> list:
    names = []
    for name, content in (extra_files or {}).items():
        target = staging / name
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            shutil.copyfile(content, target)
        names.append(name)
    return names


def _promote(staging: Path, path: Path, files) -> None:
    """Move each staged file or folder into `path`, replacing any older one by a rename."""
    path.mkdir(parents=True, exist_ok=True)
    for name in dict.fromkeys(files):
        source, target = staging / name, path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            old = None
            if target.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old", dir=target.parent))
                os.replace(target, old / target.name)
            os.replace(source, target)
            if old is not None:
                shutil.rmtree(old)
        else:
            os.replace(source, target)
