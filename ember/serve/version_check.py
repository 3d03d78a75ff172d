"""Before a version goes live: its model file agrees with its signature.json and runs one batch built from it.

A version whose model.onnx contradicted its signature.json used to be marked AVAILABLE and become the
default; every good request then failed. `check_version` compares what the runtime's file declares with
the signature (names, dtypes, ranks, fixed dimensions), then runs a batch of zeros shaped as the signature
says and checks the outputs the same way. The repository calls it before a version is AVAILABLE: on
failure the version is reported (state END, this message) and the previous version stays the default.

`tied_dimensions` reads what signature.json cannot say: which variable dimensions the model gives one
size (input_ids and attention_mask share their sequence length), so the data plane refuses a request
whose sizes differ there by name, instead of the model failing inside.
"""
from collections import defaultdict

import numpy as np

from ember.serve.errors import last_line

WARM_UP_SIZE = 2  # every variable dimension of the warm-up batch; 2 rows show an output that drops the batch


class InconsistentVersion(ValueError):
    """The model file and signature.json describe different models, or the model fails on its own signature."""


def check_version(signature, runtime) -> None:
    problems = (_compare("input", signature.inputs, runtime.inputs, runtime)
                + _compare("output", signature.outputs, runtime.outputs, runtime))
    if problems:
        raise InconsistentVersion(f"{runtime.file_name} does not match signature.json: {'; '.join(problems)}")
    _warm_up(signature, runtime)


def _compare(kind: str, promised: tuple, declared: list, runtime) -> list:
    """What differs between the signature's tensors and the model file's. A torch program takes its inputs
    in signature order, so there position pairs them; an ONNX graph names them."""
    if runtime.binds_by_position:
        if len(promised) != len(declared):
            return [f"signature.json lists {len(promised)} {kind}s, {runtime.file_name} has {len(declared)}"]
        pairs = list(zip(promised, declared))
    else:
        by_name = {spec.name: spec for spec in declared}
        missing = [spec.name for spec in promised if spec.name not in by_name]
        extra = sorted(set(by_name) - {spec.name for spec in promised})
        if missing or extra:
            return [f"{kind}s: signature.json lists {[s.name for s in promised]}, {runtime.file_name} has "
                    f"{[s.name for s in declared]}"]
        pairs = [(spec, by_name[spec.name]) for spec in promised]
    return [problem for spec, model in pairs if (problem := _mismatch(kind, spec, model, runtime.file_name))]


def tied_dimensions(signature, runtime) -> tuple:
    """Groups of (signature input name, axis), beyond the batch axis, that the model file names with one
    symbol. Call after check_version, which pairs the file's inputs with the signature's."""
    names = [spec.name for spec in (signature.inputs if runtime.binds_by_position else runtime.inputs)]
    groups = defaultdict(list)
    for name, symbols in zip(names, runtime.input_dimension_names):
        for axis, symbol in enumerate(symbols):
            if symbol is not None and axis > 0:
                groups[symbol].append((name, axis))
    return tuple(tuple(group) for group in groups.values() if len(group) > 1)


def _mismatch(kind: str, spec, model, file_name: str) -> str | None:
    says = f"{kind} {spec.name!r}: signature.json says {spec.dtype.name} {list(spec.shape)}, " \
           f"{file_name} {model.dtype.name} {list(model.shape)}"
    if spec.dtype != model.dtype or len(spec.shape) != len(model.shape):
        return says
    # The model may be more general than its signature (-1 where the signature fixes a size), never less.
    if any(m != -1 and s != m for s, m in zip(spec.shape, model.shape)):
        return says + " (-1: any size)"
    return None


def _warm_up(signature, runtime):
    batch = {spec.name: _zeros(spec) for spec in signature.inputs}
    shapes = {name: list(array.shape) for name, array in batch.items()}
    try:
        outputs = runtime.run(batch)
    except Exception as error:  # noqa: BLE001 - whatever the runtime raises, the version must not go live
        raise InconsistentVersion(f"{runtime.file_name} failed on a batch of zeros shaped as signature.json "
                                  f"says ({shapes}): {type(error).__name__}: {last_line(error)}") from None
    if set(outputs) != set(signature.output_names):
        raise InconsistentVersion(f"{runtime.file_name} returned outputs {sorted(outputs)}; signature.json lists "
                                  f"{signature.output_names}")
    rows = next(iter(batch.values())).shape[0]
    for spec in signature.outputs:
        array = outputs[spec.name]
        expected = tuple(rows if i == 0 and d == -1 else d for i, d in enumerate(spec.shape))
        if array.dtype != spec.dtype or array.ndim != len(expected) or \
                any(e not in (-1, d) for e, d in zip(expected, array.shape)):
            raise InconsistentVersion(
                f"{runtime.file_name} answered a batch of {rows} rows ({shapes}) with output {spec.name!r} "
                f"{array.dtype.name} {list(array.shape)}; signature.json says {spec.dtype.name} "
                f"{list(spec.shape)} (-1: any size, the first the batch's rows)")


def _zeros(spec) -> np.ndarray:
    shape = tuple(WARM_UP_SIZE if d == -1 else d for d in spec.shape)
    return np.full(shape, "", dtype=object) if spec.dtype == object else np.zeros(shape, spec.dtype)
