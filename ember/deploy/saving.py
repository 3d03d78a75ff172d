"""One-file model saving: a zip of JSON and safetensors. Loading never unpickles.

Layout of a `.ember` file (any extension works):
- `ember.json`: format version, how to rebuild the model (a Sequential's layer configs,
  or an importable class path and the constructor arguments recorded at construction),
  and the compile configuration;
- `weights.safetensors`: every tensor of `state_dict()`.
"""
import importlib
import io
import json
import zipfile
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from ember.distributed import is_sharded
from ember.io import atomic_write_bytes

FORMAT = "ember-model"
VERSION = 1


class ModelFileError(ValueError):
    """A model or weights file that is corrupt, truncated, unsafe or does not fit."""


def save_model(model: nn.Module, path) -> Path:
    from ember.define.sequential import Sequential

    weights = _tensors_bytes(model)  # first: under FSDP, a collective every rank joins
    if weights is None:
        return Path(path)  # a rank of an FSDP run other than 0, which writes the file
    meta = {"format": FORMAT, "version": VERSION, "torch": torch.__version__}
    if isinstance(model, Sequential):
        meta["architecture"] = {"kind": "sequential", "config": model.get_config()}
    else:
        arguments = getattr(model, "_init_arguments", None)
        model_class = type(model).__bases__[-1] if is_sharded(model) else type(model)  # not FSDP's FSDP<Name>
        architecture = {"kind": "class", "class_path": f"{model_class.__module__}.{model_class.__qualname__}"}
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
    compiled = getattr(model, "compiled", None)
    meta["compile"] = compiled.spec if compiled is not None else None

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("ember.json", json.dumps(meta, indent=2))
        archive.writestr("weights.safetensors", weights)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def load_model(path, compile=True) -> nn.Module:
    """Rebuild a model saved with `model.save()`: weights, architecture, compile configuration.
    Keras `.keras` / `.h5` files (recognised by content) go through `ember.from_keras`."""
    from ember.keras.files import is_keras_file

    if is_keras_file(path):
        from ember.keras import from_keras

        return from_keras(path)
    meta, weights = _read_archive(path)
    architecture = meta.get("architecture") or {}
    if architecture.get("kind") == "sequential":
        from ember.define.sequential import Sequential

        model = Sequential.from_config(architecture["config"])
    elif architecture.get("kind") == "class":
        model = _rebuild_class(architecture, path)
    else:
        raise ModelFileError(f"{path}: unknown architecture kind {architecture.get('kind')!r}")
    _load_state(model, weights, strict=True, source=str(path))
    spec = meta.get("compile")
    if compile and spec and isinstance(spec.get("optimizer"), str) and spec.get("loss") is not None:
        options = dict(spec.get("optimizer_options") or {})
        model.compile(spec["optimizer"], spec["loss"], spec.get("metrics"), from_logits=spec.get("from_logits"),
                      clip_grad_norm=spec.get("clip_grad_norm"), accumulate_steps=spec.get("accumulate_steps", 1),
                      **options)
    return model


def save_weights(model: nn.Module, path) -> Path:
    weights = _tensors_bytes(model)
    if weights is not None:
        atomic_write_bytes(path, weights)
    return Path(path)


def load_weights(model: nn.Module, path, strict=True) -> nn.Module:
    """Load a safetensors file (or the weights inside an ember model file) into `model`."""
    data = _read_bytes(path)
    weights = _read_archive(path, data)[1] if zipfile.is_zipfile(io.BytesIO(data)) else _parse_safetensors(data, path)
    _load_state(model, weights, strict=strict, source=str(path))
    return model


# ---------------------------------------------------------------------------------
def _tensors_bytes(model):
    """The weights as safetensors bytes. An FSDP-sharded model's are gathered to rank 0 (every rank
    must call this); the other ranks get None."""
    if is_sharded(model):
        import torch.distributed as dist

        from ember.distributed import gather_state_dict

        state = gather_state_dict(model)
        if dist.get_rank() != 0:
            return None
    else:
        state = model.state_dict()
    state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
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
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = set(archive.namelist())
        if "ember.json" not in names:
            if any(n.endswith(".pkl") for n in names):
                raise ModelFileError(f"{path} is a torch.save() archive (pickled): ember never unpickles; "
                                     "load it with torch.load(weights_only=True) and call save_weights()")
            if "config.json" in names and "model.weights.h5" in names:
                raise ModelFileError(f"{path} is a Keras file: load it with ember.from_keras()")
            raise ModelFileError(f"{path} is a zip without ember.json: not an ember model file")
        meta = json.loads(archive.read("ember.json"))
        weights = _parse_safetensors(archive.read("weights.safetensors"), path)
    except (zipfile.BadZipFile, KeyError, EOFError, json.JSONDecodeError, OSError) as error:
        raise ModelFileError(f"{path} is corrupt or truncated ({type(error).__name__}: {error}); "
                             "expected an ember model file written by model.save()") from error
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{path}: expected format {FORMAT!r}, found {meta.get('format')!r}")
    if meta.get("version", 0) > VERSION:
        raise ModelFileError(f"{path} was written by a newer ember (format version {meta['version']}, "
                             f"this one reads {VERSION})")
    return meta, weights


def _parse_safetensors(data, path):
    try:
        return load_safetensors(data)
    except Exception as error:  # safetensors raises its own SafetensorError
        raise ModelFileError(f"{path} is not a valid safetensors file ({error})") from error


def _rebuild_class(architecture, path):
    class_path = architecture["class_path"]
    if architecture.get("arguments") is None:
        raise ModelFileError(f"{path}: cannot rebuild {class_path}: {architecture.get('why_not_rebuildable')}. "
                             "Build the model yourself and call model.load_weights(path).")
    module_name, _, qualname = class_path.rpartition(".")
    try:
        cls = importlib.import_module(module_name)
        for part in qualname.split("."):
            cls = getattr(cls, part)
    except (ImportError, AttributeError) as error:
        raise ModelFileError(f"{path}: the model class {class_path} cannot be imported ({error}); make its module "
                             "importable (e.g. on PYTHONPATH) or build the model and call load_weights()") from error
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ModelFileError(f"{path}: {class_path} is not a torch.nn.Module class; refusing to call it")
    return cls(**architecture["arguments"])


def _load_state(model, weights, strict, source):
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
    with torch.no_grad():
        for key, tensor in weights.items():
            if key in own:
                own[key].copy_(tensor)
