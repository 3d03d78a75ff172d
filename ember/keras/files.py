"""Reading Keras model and weights files with h5py and the standard library only.

Three layouts exist (see docs/architecture.md, "Keras files"):
- Keras 3 `.keras`: a zip of `config.json` and `model.weights.h5`, where the weights of a
  layer sit by position under `layers/<snake_case class name>[_n]/vars/<i>`, and the
  `vars` group carries the layer's name as an attribute;
- legacy `.h5` (tf.keras 2 or Keras 3): attribute `model_config` (JSON) and a group
  `model_weights` whose layer groups list their datasets in attribute `weight_names`;
- weights-only files: Keras 3 `.weights.h5` (the `layers/...` layout) and legacy
  `save_weights` `.h5` files (the `layer_names` layout at the root).
Nothing here executes code from the file: JSON is parsed, arrays are read.
"""
import io
import json
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ember.deploy.saving import ModelFileError

ZIP_MAGIC = b"PK\x03\x04"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


@dataclass
class KerasWeights:
    """The arrays of a Keras file, per layer, in the order Keras stores them."""

    by_name: dict = field(default_factory=dict)  # layer name -> [arrays]
    by_path: dict = field(default_factory=dict)  # Keras 3 only: "layers/conv2d_1" -> [arrays]
    ordered: list = field(default_factory=list)  # legacy only: [(layer name, [arrays])] in file order


@dataclass
class KerasFile:
    path: str
    kind: str  # "keras" (Keras 3 zip), "h5" (legacy full model) or "weights"
    config: dict | None
    keras_version: str
    weights: KerasWeights


def is_keras_file(path) -> bool:
    """True for a Keras 3 `.keras` zip or an HDF5 file, judged by content, not by extension."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return False
    if head.startswith(HDF5_MAGIC):
        return True
    if head.startswith(ZIP_MAGIC):
        try:
            with zipfile.ZipFile(path) as archive:
                return "config.json" in archive.namelist()
        except zipfile.BadZipFile:
            return False
    return False


def read_keras_file(path) -> KerasFile:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such Keras file: {path}")
    data = path.read_bytes()
    if data.startswith(ZIP_MAGIC):
        return _read_keras_zip(path, data)
    if data.startswith(HDF5_MAGIC):
        return _read_h5(path, data)
    raise ModelFileError(f"{path} is neither a Keras 3 .keras zip nor an HDF5 .h5 file "
                         f"(it starts with {data[:8]!r})")


def _read_keras_zip(path, data):
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
            missing = {"config.json", "model.weights.h5"} - names
            if missing:
                raise ModelFileError(f"{path} is a zip but not a .keras file: it lacks {', '.join(sorted(missing))}")
            config = json.loads(archive.read("config.json"))
            metadata = json.loads(archive.read("metadata.json")) if "metadata.json" in names else {}
            weights_bytes = archive.read("model.weights.h5")
    except (zipfile.BadZipFile, EOFError, OSError, json.JSONDecodeError, zlib.error) as error:
        raise ModelFileError(f"{path} is corrupt or truncated ({type(error).__name__}: {error}); "
                             "expected a .keras zip written by model.save()") from error
    with _open_h5(path, weights_bytes, "model.weights.h5 inside") as h5:
        weights = _read_keras3_weights(h5, path)
    return KerasFile(str(path), "keras", config, str(metadata.get("keras_version", "3")), weights)


def _h5py():
    try:
        import h5py
    except ImportError as error:
        raise ImportError("reading Keras files needs h5py: pip install 'ember[keras]'") from error
    return h5py


def _open_h5(path, data, what=""):
    h5py = _h5py()
    try:
        return h5py.File(io.BytesIO(data), "r")
    except OSError as error:
        raise ModelFileError(f"{what + ' ' if what else ''}{path} is not a readable HDF5 file, corrupt or "
                             f"truncated ({error})") from error


def _read_h5(path, data):
    with _open_h5(path, data) as h5:
        try:
            version = _text(h5.attrs.get("keras_version", ""))
            if "model_config" in h5.attrs:
                config = json.loads(_text(h5.attrs["model_config"]))
                return KerasFile(str(path), "h5", config, version, _read_legacy_weights(h5["model_weights"], path))
            if "layer_names" in h5.attrs:
                return KerasFile(str(path), "weights", None, version, _read_legacy_weights(h5, path))
            if "layers" in h5:
                return KerasFile(str(path), "weights", None, "3", _read_keras3_weights(h5, path))
        except (OSError, KeyError, json.JSONDecodeError) as error:
            raise ModelFileError(f"{path} is corrupt or truncated ({type(error).__name__}: {error})") from error
    raise ModelFileError(f"{path} is an HDF5 file but not a Keras one: no 'model_config', 'layer_names' or "
                         "'layers' inside")


def _read_legacy_weights(group, path):
    weights = KerasWeights()
    for name in (_text(n) for n in group.attrs["layer_names"]):
        layer_group = group[name]
        arrays = [np.asarray(layer_group[_text(w)]) for w in layer_group.attrs.get("weight_names", [])]
        weights.by_name[name] = arrays
        weights.ordered.append((name, arrays))
    return weights


def _read_keras3_weights(h5, path):
    weights = KerasWeights()
    if "layers" not in h5:
        return weights
    for key, group in h5["layers"].items():
        arrays = _vars_in(group)
        weights.by_path[f"layers/{key}"] = arrays
        name = group["vars"].attrs.get("name") if "vars" in group else None
        if name is not None:
            weights.by_name[_text(name)] = arrays
    return weights


def _vars_in(group):
    """The layer's own `vars/<i>` in index order, then those of its sub-objects (an RNN's `cell`)."""
    arrays = []
    if "vars" in group:
        own = group["vars"]
        arrays.extend(np.asarray(own[str(i)]) for i in range(len(own)))
    for key, child in group.items():
        if key != "vars" and isinstance(child, _h5py().Group):
            arrays.extend(_vars_in(child))
    return arrays


def keras3_weight_path(class_name, counters) -> str:
    """The group Keras 3 stores a layer's weights under: snake_case class name, `_n` for repeats."""
    snake = re.sub(r"\W+", "", class_name)
    snake = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", snake)
    snake = re.sub("([a-z])([A-Z])", r"\1_\2", snake).lower()
    count = counters.get(snake)
    counters[snake] = 0 if count is None else count + 1
    return f"layers/{snake}" if count is None else f"layers/{snake}_{count + 1}"


def _text(value):
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
