"""signature.json (docs/export_contract.md): the only description of a model the server reads."""
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

# KServe v2 datatype names <-> numpy dtypes (looked up per request: dtype objects, not names to parse).
V2_DATATYPES = {v2: np.dtype(numpy_name) for v2, numpy_name in {
    "BOOL": "bool", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
    "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64",
    "FP16": "float16", "FP32": "float32", "FP64": "float64", "BYTES": "object",
}.items()}
NUMPY_TO_V2 = {dtype: v2 for v2, dtype in V2_DATATYPES.items()}


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


def load_signature(folder: Path) -> Signature:
    path = Path(folder) / "signature.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has no signature.json (expected an ember export folder)")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(raw, dict) or raw.get("format") != "ember-export":
        raise ValueError(f"{path}: expected an object with \"format\": \"ember-export\"")
    return Signature(
        inputs=_specs(raw, "inputs", path), outputs=_specs(raw, "outputs", path),
        task=raw.get("task"), labels=tuple(raw["labels"]) if raw.get("labels") else None,
        output_kind=raw.get("output_kind"), tokenizer=raw.get("tokenizer"))


def _specs(raw: dict, key: str, path: Path) -> tuple:
    entries = raw.get(key)
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: expected a non-empty list \"{key}\" of {{name, dtype, shape}}")
    specs = []
    for entry in entries:
        try:
            specs.append(TensorSpec(str(entry["name"]), np.dtype(entry["dtype"]),
                                    tuple(int(d) for d in entry["shape"])))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path}: bad {key} entry {entry!r}: expected name, numpy dtype, "
                             f"shape list ({error})") from None
    return tuple(specs)
