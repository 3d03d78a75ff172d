"""The training-backup file: nested state as JSON plus its tensors as safetensors. No pickle.

A backup is one `ember.container` zip (stored, not compressed), written atomically:
- `backup.json`: the state with every tensor replaced by `{"__tensor__": name}`; tuples,
  dicts with non-string keys (optimizer state is keyed by int) and numpy arrays are
  tagged so they come back as the same types;
- `tensors.safetensors`: the tensors by name.
zipfile checks each member's CRC-32 on reading, so a damaged file is detected, not loaded.
`check_backup_state` then checks that what was read has the shape of a backup (a crafted file
can be CRC-valid), so a resume either gets a usable state or sets the file aside.

Also here: every RNG state a run consumes (python, numpy, torch CPU, each CUDA device,
and the data loader's generators) as plain values, without pickle.
"""
import json
import random
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save as save_safetensors

from ember.container import FileFormatError, read_container, write_container

FORMAT = "ember-backup"
VERSION = 1
_TAGS = ("__tensor__", "__tuple__", "__items__", "__ndarray__")
# numpy arrays in a backup are RNG states and small metric values: numbers only (an object or
# void dtype from a crafted file could hold anything, or be sized by the file's whim).
_NDARRAY_KINDS = "biuf"


class BackupFileError(FileFormatError):
    """A backup file that is corrupt, truncated, crafted, or not an ember backup (e.g. a pickle)."""


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
        dtype = np.dtype(skeleton["dtype"])
        if dtype.kind not in _NDARRAY_KINDS:
            raise ValueError(f"an array of dtype {dtype}; backups hold numeric arrays only")
        return np.asarray(skeleton["__ndarray__"], dtype=dtype)
    return {k: unpack(v, tensors) for k, v in skeleton.items()}


# ------------------------------------------------------------------ file
def write_backup(path, state: dict) -> None:
    """Write `state` to `path` atomically (temporary file, fsync, rename)."""
    skeleton, tensors = pack(state)
    meta = {"format": FORMAT, "version": VERSION, "torch": torch.__version__, "state": skeleton}
    write_container(path, {"backup.json": json.dumps(meta).encode(),
                           "tensors.safetensors": save_safetensors(_storable(tensors))})


def read_backup(path) -> dict:
    """The state written by `write_backup`; BackupFileError for anything else, pickles included."""
    try:
        data = open(path, "rb").read()
    except OSError as error:
        raise BackupFileError(f"{path} cannot be read ({error})") from error
    meta, tensors = read_container(path, data, "backup.json", "tensors.safetensors", FORMAT, VERSION,
                                   BackupFileError, "backup")
    try:
        return unpack(meta.get("state"), tensors)
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError, OverflowError) as error:  # RecursionError too
        raise BackupFileError(f"{path} is inconsistent: {type(error).__name__}: {error}") from error


def check_backup_state(state, path) -> None:
    """BackupFileError unless `state` has the shape `BackupAndRestore` writes: a file can be CRC-valid
    and still crafted or damaged in its content, and must then be set aside, not half-restored."""
    def need(condition, what):
        if not condition:
            raise BackupFileError(f"{path} is not a usable backup: {what}")

    def is_int(value, low=0):
        return isinstance(value, int) and not isinstance(value, bool) and value >= low

    need(isinstance(state, dict), "its state is not an object")
    position = state.get("position")
    need(isinstance(position, dict), "no loop position")
    need(all(is_int(position.get(key)) for key in ("epoch", "step", "global_step")),
         f"position {position!r} needs non-negative integers epoch, step, global_step")
    need(isinstance(position.get("finished"), bool), "position.finished must be true or false")
    need(isinstance(state.get("params"), dict), "no params")
    need(state.get("shards") is None or state["shards"] == shards_name(path),
         f"it names shards {state.get('shards')!r}; a backup's shards can only be {shards_name(path)!r}")
    for key in ("model", "optimizer", "scheduler"):
        need(state.get(key) is None or isinstance(state[key], dict), f"{key} is not an object")
    need((state.get("model") is None) == (state.get("shards") is not None),
         "it must hold either the model's weights or the name of its shards")
    if state.get("model") is not None:
        need(all(isinstance(v, torch.Tensor) for v in state["model"].values()), "the model holds non-tensors")
        need(isinstance(state.get("optimizer"), dict), "the weights come without the optimizer's state")
    if state.get("optimizer") is not None:
        groups = state["optimizer"].get("param_groups")
        need(isinstance(groups, list) and all(isinstance(g, dict) and isinstance(g.get("params"), list)
                                              for g in groups), "optimizer param_groups malformed")
        need(isinstance(state["optimizer"].get("state"), dict), "optimizer state malformed")
    need(isinstance(state.get("scaler"), dict), "no gradient scaler state")
    need(isinstance(state.get("callbacks"), dict) and all(isinstance(v, dict) for v in state["callbacks"].values()),
         "callbacks malformed")
    need(state.get("data_seed") is None or is_int(state["data_seed"], -2**63), "data_seed is not an integer")
    ranks = state.get("ranks")
    need(isinstance(ranks, list) and ranks and all(isinstance(r, dict) for r in ranks), "no per-process state")
    for rank in ranks:
        need(_is_rng_state(rank.get("rng")), "an RNG state is malformed")
        need(rank.get("epoch_start_rng") is None or _is_rng_state(rank["epoch_start_rng"]),
             "the epoch's RNG state is malformed")
        need(isinstance(rank.get("generators"), dict)
             and all(_is_generator_state(g) for g in rank["generators"].values()),
             "a data loader generator state is malformed")
        running = rank.get("running")
        need(running is None or (isinstance(running, dict) and isinstance(running.get("loss_sum"), torch.Tensor)
                                 and is_int(running.get("seen")) and isinstance(running.get("metrics"), list)),
             "the running loss and metrics are malformed")


def shards_name(path) -> str:
    """The one folder a sharded backup's zip may name: its own sibling."""
    return Path(path).with_suffix(".shards").name


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


def _is_rng_state(state) -> bool:
    """Whether `set_rng_state` can apply `state` (checked without applying it)."""
    if not isinstance(state, dict):
        return False
    python, numpy_state, torch_state = state.get("python"), state.get("numpy"), state.get("torch")
    reference = rng_state()
    return (isinstance(python, (list, tuple)) and len(python) == 3 and python[0] == reference["python"][0]
            and isinstance(python[1], (list, tuple)) and len(python[1]) == len(reference["python"][1])
            and all(isinstance(v, int) and 0 <= v < 2**32 for v in python[1]) and python[1][-1] <= 624
            and (python[2] is None or isinstance(python[2], float))
            and isinstance(numpy_state, (list, tuple)) and len(numpy_state) == 5 and numpy_state[0] == "MT19937"
            and isinstance(numpy_state[1], np.ndarray) and numpy_state[1].shape == reference["numpy"][1].shape
            and numpy_state[1].dtype == reference["numpy"][1].dtype
            and all(isinstance(v, (int, float)) for v in numpy_state[2:])
            and _is_generator_state(torch_state)
            and (state.get("cuda") is None or isinstance(state["cuda"], list)
                 and all(isinstance(t, torch.Tensor) and t.dtype == torch.uint8 for t in state["cuda"])))


def _is_generator_state(state) -> bool:
    return isinstance(state, torch.Tensor) and state.dtype == torch.uint8 \
        and state.shape == torch.get_rng_state().shape


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

