"""One-file model saving: an `ember.container` zip of JSON and safetensors. Loading never unpickles.

Layout of a `.ember` file (any extension works):
- `ember.json`: format version, how to rebuild the model (the config of a registered config
  kind, such as a Sequential's layer configs, or a class path and the constructor arguments
  recorded at construction), and the compile configuration;
- `weights.safetensors`: every tensor of `state_dict()`.

A model file may come from anyone (docs/security.md). Loading imports nothing the file names:
kinds and class paths are looked up in `ember.saving.registry`, which holds the `ember.Model`
subclasses this process has defined (`ember.load` imports ember's own first), and among the
classes the caller allows (`custom_objects`). The architecture is first built on the
`meta` device and checked against the weights the file really holds, so a file declaring a huge
layer fails before any memory is allocated for it.
"""
import io
import json
import zipfile
from pathlib import Path

import torch
from safetensors.torch import save as save_safetensors
from torch import nn

from ember.container import FileFormatError, member_names, parse_safetensors, read_container, write_container
from ember.io import atomic_write_bytes
from ember.saving import registry

FORMAT = "ember-model"
VERSION = 1


class ModelFileError(FileFormatError):
    """A model or weights file that is corrupt, truncated, unsafe or does not fit."""


def save_model(model: nn.Module, path, *, weights: dict, model_class: type) -> Path:
    """Write `model` as one file: `weights` (its full state_dict: the caller gathers a sharded model's),
    how to rebuild it (its config, or `model_class` and its constructor arguments) and its compile
    configuration. `model_class` is the class it was built as, not one that wraps it (FSDP's FSDP<Name>)."""
    meta = {"format": FORMAT, "version": VERSION, "torch": torch.__version__}
    kind = registry.config_kind_of(model)
    if kind is not None:
        meta["architecture"] = {"kind": kind, "config": model.get_config()}
    else:
        arguments = getattr(model, "_init_arguments", None)
        architecture = {"kind": "class", "class_path": registry.class_path(model_class)}
        try:
            architecture["arguments"] = json.loads(json.dumps(arguments)) if arguments is not None else None
        except (TypeError, ValueError) as error:
            architecture["arguments"] = None
            architecture["why_not_rebuildable"] = f"constructor arguments are not JSON-serialisable: {error}"
        if arguments is None and "why_not_rebuildable" not in architecture:
            architecture["why_not_rebuildable"] = (
                f"{type(model).__name__} is not an ember.Model subclass, so its constructor arguments were not "
                "recorded")
        meta["architecture"] = architecture
    recipe = getattr(model, "recipe", None)
    meta["compile"] = recipe.describe() if recipe is not None else None

    write_container(path, {"ember.json": json.dumps(meta, indent=2).encode(),
                           "weights.safetensors": _safetensors_bytes(weights)})
    return Path(path)


def load_model(path, compile=True, custom_objects=None) -> nn.Module:
    """Rebuild a model saved with `model.save()`: weights, architecture, compile configuration.
    Call `ember.load`, which registers ember's own model classes first and reads Keras files too.

    custom_objects: model classes the file may name besides the `ember.Model` subclasses already
    defined in this process: a dict {name or "module.QualName": class} or a list of classes.
    """
    meta, weights = _read_archive(path)
    architecture = meta.get("architecture")
    if not isinstance(architecture, dict):
        raise ModelFileError(f"{path}: ember.json has no architecture object")
    build = _architecture_builder(architecture, path, custom_objects)
    try:
        with torch.device("meta"):  # sizes come from the file: check them before allocating anything
            probe = build()
    except ModelFileError:
        raise
    except Exception as error:  # noqa: BLE001 - any failure to build from the file's values is the file's
        if architecture.get("kind") != "class":  # a config is data: failing to build it is the file's fault
            raise _unbuildable(path, error) from error
        probe = None  # a user class that cannot be built on `meta`: allowed code, checked after building
    if probe is not None:
        _check_fits(probe, weights, strict=True, source=str(path))
    try:
        model = build()
    except Exception as error:  # noqa: BLE001
        raise _unbuildable(path, error) from error
    _load_state(model, weights, strict=True, source=str(path))
    spec = meta.get("compile")
    if compile and isinstance(spec, dict) and isinstance(spec.get("optimizer"), str) and spec.get("loss") is not None:
        options = spec.get("optimizer_options") or {}
        try:
            model.compile(spec["optimizer"], spec["loss"], spec.get("metrics"), loss_weights=spec.get("loss_weights"),
                          from_logits=spec.get("from_logits"),
                          clip_grad_norm=spec.get("clip_grad_norm"), accumulate_steps=spec.get("accumulate_steps", 1),
                          **options)
        except (TypeError, ValueError, KeyError) as error:
            raise ModelFileError(f"{path}: its compile configuration cannot be applied ({type(error).__name__}: "
                                 f"{error}); load it with compile=False and compile it yourself") from error
    return model


def save_weights(weights: dict, path) -> Path:
    """Write a state_dict as a safetensors file."""
    atomic_write_bytes(path, _safetensors_bytes(weights))
    return Path(path)


def load_weights(model: nn.Module, path, strict=True) -> nn.Module:
    """Load a safetensors file (or the weights inside an ember model file) into `model`."""
    data = _read_bytes(path)
    weights = _read_archive(path, data)[1] if zipfile.is_zipfile(io.BytesIO(data)) else \
        parse_safetensors(data, path, "the file", ModelFileError)
    _load_state(model, weights, strict=strict, source=str(path))
    return model


# ---------------------------------------------------------------------------------
def _safetensors_bytes(weights):
    state = {k: v.detach().contiguous().cpu() for k, v in weights.items()}
    return save_safetensors(_dedupe_shared(state))


def _dedupe_shared(state):
    # safetensors refuses tensors sharing storage (tied weights): store clones.
    seen, out = set(), {}
    for key, tensor in state.items():
        ptr = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        out[key] = tensor.clone() if ptr in seen and tensor.numel() else tensor
        seen.add(ptr)
    return out


def _read_bytes(path):
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such model file: {path}")
    data = path.read_bytes()
    if data[:1] == b"\x80":  # pickle protocol 2+
        raise ModelFileError(f"{path} is a Python pickle: ember never unpickles (it can run arbitrary code). "
                             "Re-save the weights with safetensors or model.save_weights().")
    return data


def _read_archive(path, data=None):
    data = data if data is not None else _read_bytes(path)
    names = member_names(path, data, ModelFileError, "model file written by model.save()")
    if "ember.json" not in names:
        if any(n.endswith(".pkl") for n in names):
            raise ModelFileError(f"{path} is a torch.save() archive (pickled): ember never unpickles; "
                                 "load it with torch.load(weights_only=True) and call save_weights()")
        if "config.json" in names and "model.weights.h5" in names:
            raise ModelFileError(f"{path} is a Keras file: load it with ember.from_keras()")
        raise ModelFileError(f"{path} is a zip without ember.json: not an ember model file")
    return read_container(path, data, "ember.json", "weights.safetensors", FORMAT, VERSION, ModelFileError,
                          "model file")


def _architecture_builder(architecture, path, custom_objects):
    """A function that builds the model the architecture describes (called twice: on `meta`, then for real)."""
    kind = architecture.get("kind")
    if kind == "class":
        cls = _allowed_class(architecture, path, custom_objects)
        arguments = architecture.get("arguments")
        if not (isinstance(arguments, dict) and all(isinstance(k, str) for k in arguments)):
            raise ModelFileError(f"{path}: the constructor arguments of {architecture['class_path']} are not an "
                                 "object of named arguments")
        return lambda: cls(**arguments)
    config_built = registry.config_class(kind) if isinstance(kind, str) else None
    if config_built is None:
        raise ModelFileError(f"{path}: unknown architecture kind {kind!r}; expected 'class' or one registered in "
                             f"this process, {registry.config_kinds()} (ember.load() registers ember's own)")
    config = architecture.get("config")
    if not isinstance(config, dict):
        raise ModelFileError(f"{path}: the {kind} architecture has no config object")
    return lambda: config_built.from_config(config)


def _allowed_class(architecture, path, custom_objects):
    """The class a file names, if the caller allows it; nothing is imported because a file says so."""
    class_path = architecture.get("class_path")
    if not isinstance(class_path, str):
        raise ModelFileError(f"{path}: the architecture names no class_path")
    if architecture.get("arguments") is None:
        raise ModelFileError(f"{path}: cannot rebuild {class_path}: {architecture.get('why_not_rebuildable')}. "
                             "Build the model yourself and call model.load_weights(path).")
    allowed = _custom_classes(custom_objects)
    cls = allowed.get(class_path) or allowed.get(class_path.rpartition(".")[2]) \
        or registry.defined_model_class(class_path)
    if cls is None:
        raise ModelFileError(
            f"{path} names the model class {class_path}, which is not an ember.Model subclass defined in this "
            "process: ember imports nothing a file names. Import the module that defines it first, or allow it "
            f"with ember.load(path, custom_objects={{'{class_path.rpartition('.')[2]}': TheClass}}) "
            f"(ember export: --allow-class {class_path})")
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ModelFileError(f"{path}: {class_path} is not a torch.nn.Module class; refusing to call it")
    return cls


def _custom_classes(custom_objects) -> dict:
    if custom_objects is None:
        return {}
    if isinstance(custom_objects, dict):
        return dict(custom_objects)
    return {key: cls for cls in custom_objects for key in (registry.class_path(cls), cls.__name__)}


def _unbuildable(path, error):
    return ModelFileError(f"{path}: the architecture it describes cannot be built ({type(error).__name__}: "
                          f"{str(error)[:300]})")


def _check_fits(model, weights, strict, source):
    own = model.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    mis_shaped = [f"{k}: file {tuple(weights[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in sorted(set(own) & set(weights)) if tuple(own[k].shape) != tuple(weights[k].shape)]
    problems = []
    if missing and strict:
        problems.append("missing in the file: " + ", ".join(missing))
    if unexpected and strict:
        problems.append("unexpected in the file: " + ", ".join(unexpected))
    if mis_shaped:
        problems.append("mis-shaped: " + "; ".join(mis_shaped))
    if problems:
        raise ModelFileError(f"{source} does not fit {type(model).__name__}: " + " | ".join(problems))
    return own


def _load_state(model, weights, strict, source):
    own = _check_fits(model, weights, strict, source)
    with torch.no_grad():
        for key, tensor in weights.items():
            if key in own:
                own[key].copy_(tensor)
