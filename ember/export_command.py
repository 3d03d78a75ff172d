"""`ember export MODEL_FILE --to onnx,program,int8,tflite,pte,web --out DIR [--calibration FILE.npy]`.

Here, at the top, not in `deploy/`: it reads model files (`ember.load`, above `define` and
`keras`), while `deploy` sits below `define`, whose `Model.export` calls it."""
import importlib

import numpy as np
import torch

from ember.deploy.export import FORMATS, export
from ember.deploy.report import print_table
from ember.loading import load


def add_arguments(parser):
    parser.add_argument("model_file", help="an ember model file (written by model.save() or ModelCheckpoint)")
    parser.add_argument("--to", default="onnx", help=f"comma-separated formats: {','.join(FORMATS)}, or all")
    parser.add_argument("--out", required=True, help="export folder (see docs/export_contract.md)")
    parser.add_argument("--calibration", help="a .npy file of training inputs, needed by the int8 format")
    parser.add_argument("--held-out", help="a .npy file of inputs to compare the artifacts on (default: random)")
    parser.add_argument("--input-shape", help="one input's shape without the batch axis, e.g. 1,28,28, when the "
                                              "model file does not record it and no --calibration is given")
    parser.add_argument("--allow-class", action="append", default=[], metavar="MODULE.CLASS",
                        help="a model class the file may name (repeatable): its module is imported. Files name "
                             "classes; ember imports none unless allowed here")


def run(args) -> int:
    model = load(args.model_file, compile=False, custom_objects=[_import_class(p) for p in args.allow_class])
    calibration = _load_npy(args.calibration, "--calibration")
    held_out = _load_npy(args.held_out, "--held-out")
    reports = export(model, args.out, format=args.to.split(","), example=_example(model, args, calibration),
                     calibration_data=calibration, held_out=held_out)
    print_table(reports)
    print(f"wrote {args.out}")
    return 0


def _example(model, args, calibration):
    if args.input_shape:
        try:
            shape = [int(d) for d in args.input_shape.split(",")]
        except ValueError:
            raise ValueError(f"--input-shape must be integers separated by commas, e.g. 1,28,28; got "
                             f"{args.input_shape!r}") from None
        return torch.rand(2, *shape)
    if calibration is not None:
        return torch.from_numpy(calibration[:2])
    if getattr(model, "input_shape", None):
        return torch.rand(2, *model.input_shape)
    raise ValueError(f"{args.model_file} does not record its input shape: pass --input-shape (e.g. 1,28,28) "
                     "or --calibration FILE.npy")


def _import_class(class_path):
    module_name, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as error:
        raise ValueError(f"--allow-class {class_path}: expected MODULE.CLASS importable here ({error})") from None


def _load_npy(path, option):
    if path is None:
        return None
    try:
        array = np.load(path, allow_pickle=False)  # never unpickle what a user hands us
    except ValueError as error:
        raise ValueError(f"{option} {path}: expected a numeric .npy array ({error})") from error
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{option} {path}: expected a numeric array, got dtype {array.dtype}")
    return np.ascontiguousarray(array.astype(np.float32) if array.dtype == np.float64 else array)
