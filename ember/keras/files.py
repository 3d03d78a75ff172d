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
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from ember.container import parse_json_object
from ember.saving import ModelFileError
from ember.keras.archive import ZIP_ERRORS, read_members
from ember.keras.hdf5 import H5File
from ember.keras.isolation import run_forked
from ember.keras.model_config import describe

ZIP_MAGIC = b"PK\x03\x04"
# What the child reading an HDF5 file may allocate and take: the arrays (at most the file's size,
# ember/keras/hdf5.py), their encoding for the pipe, HDF5's caches; parsing runs at hundreds of MB/s.
HDF5_MEMORY_PER_BYTE = 4
HDF5_MEMORY_ALLOWANCE = 256 << 20
HDF5_SECONDS = 10
HDF5_BYTES_PER_SECOND = 16 << 20
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
SUBLAYER_ORDER = {name: rank for rank, name in enumerate(
    ["forward_layer", "query_dense", "key_dense", "_gate_dense", "value_dense", "output_dense"])}


@dataclass
class KerasWeights:
    """The arrays of a Keras file, per layer, in the order Keras stores them."""

    by_name: dict = field(default_factory=dict)  # layer name -> [arrays]; a nested model's: "model/layer"
    by_path: dict = field(default_factory=dict)  # Keras 3 only: "layers/conv2d_1" -> [arrays]
    ordered: list = field(default_factory=list)  # legacy only: [(layer name, [arrays])] in file order
    array_names: dict = field(default_factory=dict)  # legacy only: layer name -> its weight_names


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
        except ZIP_ERRORS:
            return False
    return False


def read_keras_file(path) -> KerasFile:
    """The config, Keras version and weights of a `.keras`, `.h5` or `.weights.h5` file.

    The file is untrusted input: anything wrong with it raises ModelFileError naming it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such Keras file: {path}")
    if path.is_dir():
        raise ModelFileError(f"{path} is a directory; ember reads a Keras .keras zip or an .h5 file (Keras' unzipped "
                             "format, model.save(..., zipped=False), is not supported)")
    with open(path, "rb") as f:
        head = f.read(len(HDF5_MAGIC))
    if head.startswith(ZIP_MAGIC):
        return _read_keras_zip(path)
    if head.startswith(HDF5_MAGIC):
        return _read_h5(path, path.read_bytes())
    raise ModelFileError(f"{path} is neither a Keras 3 .keras zip nor an HDF5 .h5 file "
                         f"(it starts with {head!r})")


def _read_keras_zip(path):
    members = read_members(path, ("config.json", "model.weights.h5"), ("metadata.json",))
    config = parse_json_object(members["config.json"], path, "config.json", ModelFileError)
    metadata = parse_json_object(members.get("metadata.json", b"{}"), path, "metadata.json", ModelFileError)
    version = metadata.get("keras_version", "3")
    if not isinstance(version, str):
        raise ModelFileError(f"{path}: metadata.json's keras_version must be a string such as \"3.15.1\", found "
                             f"{describe(version)}")
    weights = _read_hdf5(members["model.weights.h5"], f"model.weights.h5 inside {path}", _keras3_weights)
    return KerasFile(str(path), "keras", config, version, _weights(weights, path))


def _read_h5(path, data):
    contents = _read_hdf5(data, str(path), _h5_contents)
    config = contents["config"]
    if config is not None:
        config = parse_json_object(config.encode("utf-8", "replace"), path, "attribute model_config", ModelFileError)
    return KerasFile(str(path), contents["kind"], config, contents["version"], _weights(contents["weights"], path))


def _read_hdf5(data, source, contents):
    """contents(h5) of an HDF5 file, read in a forked child whose memory and time are bounded by
    the file's size (ember/keras/isolation.py: libhdf5 itself allocates what a file declares)."""
    def read():
        with H5File(data, source) as h5:
            return contents(h5)

    return run_forked(read, memory=HDF5_MEMORY_PER_BYTE * len(data) + HDF5_MEMORY_ALLOWANCE,
                      seconds=HDF5_SECONDS + len(data) / HDF5_BYTES_PER_SECOND, source=source)


def _h5_contents(h5):
    """A legacy model, a legacy weights file or a Keras 3 weights file, as plain values."""
    version = h5.text(h5.root, "keras_version") or ""
    model_config = h5.text(h5.root, "model_config")
    if model_config is not None:
        weights = _legacy_weights(h5, h5.group(h5.root, "model_weights"))
        return {"kind": "h5", "config": model_config, "version": version, "weights": weights}
    if h5.attribute(h5.root, "layer_names") is not None:
        return {"kind": "weights", "config": None, "version": version, "weights": _legacy_weights(h5, h5.root)}
    if h5.has(h5.root, "layers"):
        return {"kind": "weights", "config": None, "version": "3", "weights": _keras3_weights(h5)}
    raise ModelFileError(f"{h5.source} is an HDF5 file but not a Keras one: no 'model_config', 'layer_names' or "
                         "'layers' inside")


def _weights(contents, path):
    """KerasWeights from the plain values the reading child returned."""
    try:
        return KerasWeights(by_name=dict(contents["by_name"]), by_path=dict(contents["by_path"]),
                            ordered=[(name, arrays) for name, arrays in contents["ordered"]],
                            array_names=dict(contents["array_names"]))
    except (KeyError, TypeError, ValueError) as error:
        raise ModelFileError(f"reading {path} returned malformed weights ({error})") from error


def _legacy_weights(h5, group):
    weights = {"by_name": {}, "by_path": {}, "ordered": [], "array_names": {}}
    for name in h5.texts(group, "layer_names") or []:
        layer_group = h5.lookup(group, name)
        array_names = h5.texts(layer_group, "weight_names") or []
        arrays = [h5.array(h5.lookup(layer_group, weight)) for weight in array_names]
        weights["by_name"][name] = arrays
        weights["array_names"][name] = array_names
        weights["ordered"].append([name, arrays])
    return weights


def _keras3_weights(h5):
    weights = {"by_name": {}, "by_path": {}, "ordered": [], "array_names": {}}
    if h5.has(h5.root, "layers"):
        _keras3_layers(h5, h5.group(h5.root, "layers"), "", "", weights, depth=1)
    return weights


def _keras3_layers(h5, layers_group, path, name_prefix, weights, depth):
    """Each layer's arrays under `layers/<group>`, by path and by name; a nested model's group holds
    `layers` of its own, whose layers are also stored as "<model name>/<layer name>" (by path,
    "layers/<model>/layers/..."). Returns every array, in the order the groups were walked."""
    walked = []
    for key, group in h5.subgroups(layers_group, depth=depth):
        name = h5.text(h5.group(group, "vars"), "name") if h5.has(group, "vars") else None
        inner_path, inner_prefix = f"{path}layers/{key}/", f"{name_prefix}{name or key}/"
        arrays = _vars_in(h5, group, depth + 1, lambda inner, inner_depth: _keras3_layers(
            h5, inner, inner_path, inner_prefix, weights, inner_depth))
        weights["by_path"][f"{path}layers/{key}"] = arrays
        if name is not None:
            weights["by_name"][name_prefix + name] = arrays
        walked.extend(arrays)
    return walked


def _vars_in(h5, group, depth, walk_layers=None):
    """The layer's own `vars/<i>` in index order, then those of its sub-objects (an RNN's `cell`);
    a nested model's `layers` group goes to `walk_layers(group, depth)`, which records them too."""
    arrays = []
    # Groups are listed by name; the converters expect the order of the layer's `weights` (the order
    # legacy .h5 files list them in): a Bidirectional's forward_layer first, attention's projections in
    # the order it builds them.
    subgroups = sorted(h5.subgroups(group, depth),
                       key=lambda entry: SUBLAYER_ORDER.get(entry[0], len(SUBLAYER_ORDER)))
    for key, child in subgroups:
        if key == "vars":
            index = 0
            while h5.has(child, str(index)):
                arrays.append(h5.array(h5.child(child, str(index))))
                index += 1
    for key, child in subgroups:
        if key == "layers" and walk_layers is not None:
            arrays.extend(walk_layers(child, depth + 1))
        elif key != "vars":
            arrays.extend(_vars_in(h5, child, depth + 1))
    return arrays


def keras3_weight_path(class_name, counters) -> str:
    """The group Keras 3 stores a layer's weights under: snake_case class name, `_n` for repeats."""
    snake = re.sub(r"\W+", "", class_name)
    snake = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", snake)
    snake = re.sub("([a-z])([A-Z])", r"\1_\2", snake).lower()
    count = counters.get(snake)
    counters[snake] = 0 if count is None else count + 1
    return f"layers/{snake}" if count is None else f"layers/{snake}_{count + 1}"


