"""The training-backup file: nested state as JSON plus its tensors as safetensors. No pickle.

A backup is one zip (stored, not compressed) written atomically through `ember.io`:
- `backup.json`: the state with every tensor replaced by `{"__tensor__": name}`; tuples,
  dicts with non-string keys (optimizer state is keyed by int) and numpy arrays are
  tagged so they come back as the same types;
- `tensors.safetensors`: the tensors by name.
zipfile checks each member's CRC-32 on reading, so a damaged file is detected, not loaded.

Also here: every RNG state a run consumes (python, numpy, torch CPU, each CUDA device,
and the data loader's generators) as plain values, without pickle.
"""
import json
import random
import zipfile

import numpy as np
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from ember.io import atomic_write

FORMAT = "ember-backup"
VERSION = 1
_TAGS = ("__tensor__", "__tuple__", "__items__", "__ndarray__")


class BackupFileError(ValueError):
    """A backup file that is corrupt, truncated, or not an ember backup (e.g. a pickle)."""


# ------------------------------------------------------------------ state <-> JSON + tensors
def pack(state, tensors=None, path="state"):
    """(JSON-able skeleton, {name: tensor}) for nested dicts/lists/tuples of tensors and scalars."""
    tensors = {} if tensors is None else tensors
    if isinstance(state, torch.Tensor):
        name = path if path not in tensors else f"{path}#{len(tensors)}"
        order = _dim_order(state)
        if order is None:
            tensors[name] = state
            return {"__tensor__": name}, tensors
        # Stored in memory order, restored with the same strides: an optimizer moment kept
        # channels_last like its parameter must come back so, or the update rounds differently.
        tensors[name] = state.permute(order)
        return {"__tensor__": name, "dim_order": order}, tensors
    if isinstance(state, np.ndarray):
        return {"__ndarray__": state.tolist(), "dtype": str(state.dtype)}, tensors
    if isinstance(state, np.generic):
        return state.item(), tensors
    if state is None or isinstance(state, (bool, int, float, str)):
        return state, tensors
    if isinstance(state, tuple):
        return {"__tuple__": [pack(v, tensors, f"{path}/{i}")[0] for i, v in enumerate(state)]}, tensors
    if isinstance(state, list):
        return [pack(v, tensors, f"{path}/{i}")[0] for i, v in enumerate(state)], tensors
    if isinstance(state, dict):
        if all(isinstance(k, str) for k in state) and not set(state) & set(_TAGS):
            return {k: pack(v, tensors, f"{path}/{k}")[0] for k, v in state.items()}, tensors
        items = []
        for k, v in state.items():
            if not (k is None or isinstance(k, (bool, int, float, str))):
                raise TypeError(f"cannot back up {path}: dict key {k!r} is a {type(k).__name__}; "
                                "keys must be str, int, float, bool or None")
            items.append([k, pack(v, tensors, f"{path}/{k}")[0]])
        return {"__items__": items}, tensors
    raise TypeError(f"cannot back up {path}: a {type(state).__name__} is neither a tensor, a number, a string, "
                    "a list, a tuple nor a dict (ember backups never pickle objects)")


def unpack(skeleton, tensors):
    if isinstance(skeleton, list):
        return [unpack(v, tensors) for v in skeleton]
    if not isinstance(skeleton, dict):
        return skeleton
    if "__tensor__" in skeleton:
        tensor = tensors[skeleton["__tensor__"]]
        order = skeleton.get("dim_order")
        return tensor if order is None else tensor.permute(sorted(range(len(order)), key=order.__getitem__))
    if "__tuple__" in skeleton:
        return tuple(unpack(v, tensors) for v in skeleton["__tuple__"])
    if "__items__" in skeleton:
        return {k: unpack(v, tensors) for k, v in skeleton["__items__"]}
    if "__ndarray__" in skeleton:
        return np.asarray(skeleton["__ndarray__"], dtype=skeleton["dtype"])
    return {k: unpack(v, tensors) for k, v in skeleton.items()}


# ------------------------------------------------------------------ file
def write_backup(path, state: dict) -> None:
    """Write `state` to `path` atomically (temporary file, fsync, rename)."""
    skeleton, tensors = pack(state)
    meta = {"format": FORMAT, "version": VERSION, "torch": torch.__version__, "state": skeleton}
    with atomic_write(path, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("backup.json", json.dumps(meta))
        archive.writestr("tensors.safetensors", save_safetensors(_storable(tensors)))


def read_backup(path) -> dict:
    """The state written by `write_backup`; BackupFileError for anything else, pickles included."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            if head[:1] == b"\x80":
                raise BackupFileError(f"{path} is a Python pickle, not an ember backup: refused, ember never "
                                      "unpickles (a pickle can run arbitrary code)")
            f.seek(0)
            with zipfile.ZipFile(f) as archive:
                names = set(archive.namelist())
                if names != {"backup.json", "tensors.safetensors"}:
                    raise BackupFileError(f"{path} is a zip holding {sorted(names)}, not an ember backup "
                                          "(backup.json + tensors.safetensors): refused, nothing in it was run")
                meta = json.loads(archive.read("backup.json"))
                tensors = load_safetensors(archive.read("tensors.safetensors"))
    except BackupFileError:
        raise
    except Exception as error:  # zipfile, json and safetensors each raise their own kinds
        raise BackupFileError(f"{path} is corrupt or truncated ({type(error).__name__}: {error})") from error
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise BackupFileError(f"{path}: expected format {FORMAT!r}, found "
                              f"{meta.get('format') if isinstance(meta, dict) else type(meta).__name__!r}")
    if meta.get("version", 0) > VERSION:
        raise BackupFileError(f"{path} was written by a newer ember (backup version {meta['version']}, this one "
                              f"reads {VERSION})")
    try:
        return unpack(meta["state"], tensors)
    except (KeyError, TypeError, ValueError) as error:
        raise BackupFileError(f"{path} is inconsistent: {type(error).__name__}: {error}") from error


def _dim_order(tensor):
    """The permutation that makes a non-contiguous but dense tensor (e.g. channels_last)
    contiguous; None for contiguous tensors and for views with gaps or overlaps."""
    if tensor.dim() < 2 or tensor.is_contiguous():
        return None
    order = sorted(range(tensor.dim()), key=lambda d: -tensor.stride(d))
    return order if tensor.permute(order).is_contiguous() else None


def _storable(tensors):
    """Contiguous CPU tensors, none sharing memory (safetensors refuses shared storage)."""
    seen, out = set(), {}
    for name, tensor in tensors.items():
        tensor = tensor.detach().cpu().contiguous()
        ptr = tensor.untyped_storage().data_ptr()
        if tensor.numel() and ptr in seen:
            tensor = tensor.clone()
        seen.add(ptr)
        out[name] = tensor
    return out


# ------------------------------------------------------------------ RNG
def rng_state() -> dict:
    """Every global RNG state: python, numpy, torch CPU and each initialised CUDA device."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(legacy=True),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(tuple(state["numpy"]))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available():
        if len(cuda) != torch.cuda.device_count():
            raise ValueError(f"the backup holds RNG states for {len(cuda)} CUDA devices but this machine has "
                             f"{torch.cuda.device_count()}: resume on the same number of GPUs")
        torch.cuda.set_rng_state_all(cuda)


def loader_generators(batches) -> dict:
    """The torch.Generators that decide a DataLoader's order (its own, its sampler's), by role."""
    loader = getattr(batches, "iterable", None)
    found, seen = {}, set()
    for role, owner in (("loader", loader), ("sampler", getattr(loader, "sampler", None)),
                        ("batch_sampler", getattr(getattr(loader, "batch_sampler", None), "sampler", None))):
        generator = getattr(owner, "generator", None)
        if isinstance(generator, torch.Generator) and id(generator) not in seen:
            seen.add(id(generator))
            found[role] = generator
    return found

