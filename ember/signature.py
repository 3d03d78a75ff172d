"""`signature.json` (docs/export_contract.md): an export folder's description of its model's inputs and outputs,
the only description of a model the server reads.

This module owns the file: its name, its writing (atomic, so a reader never sees half of one) and its
reading. The reader treats the file as hostile (a served folder may come from anyone): every field is
checked, and anything wrong is a ValueError naming the file, the field, what was expected and what came.
What goes into a signature is decided where the model is known (`ember.deploy.signature`); this module
only writes and reads it.
"""
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from ember.io import atomic_write_text
from ember.untrusted import MAX_RANK, is_int, short_repr

SIGNATURE_FILE = "signature.json"
FORMAT, VERSION = "ember-export", 1

# The dtypes an input or output may have: exactly those KServe v2 has a datatype for, by v2 name (the server
# speaks v2), as dtype objects, not names to parse: the server looks them up per request.
V2_DATATYPES = {v2: np.dtype(numpy_name) for v2, numpy_name in {
    "BOOL": "bool", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
    "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64",
    "FP16": "float16", "FP32": "float32", "FP64": "float64", "BYTES": "object",
}.items()}
NUMPY_TO_V2 = {dtype: v2 for v2, dtype in V2_DATATYPES.items()}
_DTYPE_NAMES = {dtype.name: dtype for dtype in V2_DATATYPES.values()}  # signature.json says numpy's names


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: np.dtype
    shape: tuple  # -1 marks a variable dimension; shape[0] is the batch

    def describe(self) -> str:
        return f"{self.name}: {self.dtype.name} {list(self.shape)}"


@dataclass(frozen=True)
class Signature:
    inputs: tuple
    outputs: tuple
    task: str | None
    labels: tuple | None
    output_kind: str | None
    tokenizer: dict | None

    @cached_property
    def input_names(self) -> list:
        return [spec.name for spec in self.inputs]

    @cached_property
    def output_names(self) -> list:
        return [spec.name for spec in self.outputs]


def write_signature(folder, inputs: list, outputs: list, task=None, labels=None, output_kind=None,
                    tokenizer=None) -> None:
    """Write `folder`/signature.json atomically. `inputs`, `outputs`: [{"name", "dtype", "shape"}];
    `tokenizer`: {"file", "max_length"} for a text classifier."""
    signature = {"format": FORMAT, "version": VERSION, "inputs": inputs, "outputs": outputs, "task": task,
                 "labels": labels, "output_kind": output_kind, "tokenizer": tokenizer}
    atomic_write_text(Path(folder) / SIGNATURE_FILE, json.dumps(signature, indent=2) + "\n")


def load_signature(folder) -> Signature:
    """Read and check `folder`/signature.json. Raises FileNotFoundError when it is missing and ValueError,
    naming the file, the field, what was expected and what came, for anything else wrong with it."""
    path = Path(folder) / SIGNATURE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has no {SIGNATURE_FILE} (expected an ember export folder)")
    try:
        raw = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as error:  # JSONDecodeError, UnicodeDecodeError; nesting too deep
        raise ValueError(f"{path} is not valid JSON: {str(error)[:200]}") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ValueError(f"{path}: expected an object with \"format\": \"{FORMAT}\"")
    labels = raw.get("labels")
    if labels is not None and not (isinstance(labels, list) and all(isinstance(label, str) for label in labels)):
        raise ValueError(f"{path}: \"labels\": expected a list of strings or null, got {short_repr(labels)}")
    for key, kind in (("task", str), ("output_kind", str), ("tokenizer", dict)):
        if raw.get(key) is not None and not isinstance(raw[key], kind):
            raise ValueError(f"{path}: \"{key}\": expected {'an object' if kind is dict else 'a string'} or null, "
                             f"got {short_repr(raw[key])}")
    return Signature(
        inputs=_specs(raw, "inputs", path), outputs=_specs(raw, "outputs", path),
        task=raw.get("task"), labels=tuple(labels) if labels else None,
        output_kind=raw.get("output_kind"), tokenizer=raw.get("tokenizer"))


def _specs(raw: dict, key: str, path: Path) -> tuple:
    entries = raw.get(key)
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: expected a non-empty list \"{key}\" of {{name, dtype, shape}}")
    specs = [_spec(entry, key, path) for entry in entries]
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: {key}: each name may appear once, got {names}")
    return tuple(specs)


def _spec(entry, key: str, path: Path) -> TensorSpec:
    where = f"{path}: bad {key} entry {short_repr(entry)}"
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected an object {{name, dtype, shape}}")
    name, dtype, shape = entry.get("name"), entry.get("dtype"), entry.get("shape")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: expected \"name\" to be a non-empty string")
    if not isinstance(dtype, str) or dtype not in _DTYPE_NAMES:
        raise ValueError(f"{where}: expected \"dtype\" to be one of {', '.join(_DTYPE_NAMES)}")
    if (not isinstance(shape, list) or not 1 <= len(shape) <= MAX_RANK
            or not all(is_int(d) and d >= -1 for d in shape)):
        raise ValueError(f"{where}: expected \"shape\" to be a list of 1 to {MAX_RANK} integers, "
                         f"each a size or -1 for any size (the first is the batch)")
    return TensorSpec(name, _DTYPE_NAMES[dtype], tuple(shape))
