"""Sharded checkpoints with `torch.distributed.checkpoint` (DCP).

Every rank writes its own shard in parallel (an FSDP model is never gathered on one
rank); loading reshards, so a checkpoint written by N processes loads into M, or into
one process with no launcher at all. Under a launcher, every rank calls these
functions (they are collectives), and the directory must be on storage every rank
sees. A checkpoint is written to `<directory>.partial` and renamed when complete, so an
interrupted save never replaces a good checkpoint with half of one.

Reading never runs code from the folder: DCP's own reader unpickles `.metadata` and the
non-tensor values (`torch.load(weights_only=False)`), so ember reads `.metadata` with an
unpickler that knows only DCP's metadata classes, checks that every data file it names lies
in the folder, and loads non-tensor values with `weights_only=True`.
"""
import os
import pickle
import shutil
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint._traverse import set_element
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.filesystem import _StorageInfo
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta, TensorStorageMetadata

from ember.container import FileFormatError
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                     get_optimizer_state_dict, set_model_state_dict,
                                                     set_optimizer_state_dict)


class CheckpointMismatchError(ValueError):
    """The checkpoint holds a different model (other parameter names or shapes)."""


class CheckpointFileError(FileFormatError):
    """A checkpoint folder whose metadata is corrupt, crafted (a pickle that would run code), or names
    data outside the folder."""


def save_checkpoint(model, directory, optimizer=None) -> Path:
    """Write the model's weights (and the optimizer state, if given) to `directory`."""
    directory = Path(directory)
    partial = directory.with_name(directory.name + ".partial")
    if _is_main():
        shutil.rmtree(partial, ignore_errors=True)
    _barrier()
    state = {"model": get_model_state_dict(model)}
    if optimizer is not None:
        state["optimizer"] = get_optimizer_state_dict(model, optimizer)
    dcp.save(state, checkpoint_id=partial)
    if _is_main():
        previous = directory.with_name(directory.name + ".previous")
        if directory.exists():
            os.replace(directory, previous)
        os.replace(partial, directory)
        shutil.rmtree(previous, ignore_errors=True)
    _barrier()
    return directory


def load_checkpoint(model, directory, optimizer=None):
    """Load a checkpoint written by `save_checkpoint` with any number of processes into `model`
    (plain, DDP or FSDP-sharded) and, if given, `optimizer`. Returns the model."""
    directory = Path(directory)
    stored = read_checkpoint_metadata(directory).state_dict_metadata
    state = {"model": get_model_state_dict(model)}
    _check_fits(state["model"], stored, directory)
    if optimizer is not None:
        if not any(key.startswith("optimizer.") for key in stored):
            raise CheckpointMismatchError(f"{directory} holds no optimizer state: load it without optimizer=")
        state["optimizer"] = get_optimizer_state_dict(model, optimizer)
    try:
        dcp.load(state, storage_reader=_CheckedReader(directory), planner=_WeightsOnlyLoadPlanner())
    except CheckpointFileError:
        raise
    except (Exception, CheckpointException) as error:  # DCP wraps a rank's failure in this BaseException
        raise CheckpointFileError(f"{directory}: its data files are damaged or do not match its metadata "
                                  f"({type(error).__name__}: {str(error)[:500]})") from error
    set_model_state_dict(model, state["model"])
    if optimizer is not None:
        set_optimizer_state_dict(model, optimizer, state["optimizer"])
    return model


def read_checkpoint_metadata(directory) -> Metadata:
    """The `.metadata` of a checkpoint folder, read without running code and checked to name only
    data files inside the folder; CheckpointFileError otherwise."""
    directory = Path(directory)
    path = directory / ".metadata"
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not a checkpoint written by ember.distributed.save_checkpoint "
                                "(no .metadata file in it)")
    try:
        with open(path, "rb") as f:
            metadata = _MetadataUnpickler(f).load()
    except CheckpointFileError as error:
        raise CheckpointFileError(f"{path}: {error}") from None
    except Exception as error:  # a damaged pickle fails in many ways; none of them runs code
        raise CheckpointFileError(f"{path} is corrupt or truncated ({type(error).__name__}: {error})") from error
    if not isinstance(metadata, Metadata) or not isinstance(metadata.state_dict_metadata, dict) \
            or not isinstance(metadata.storage_data, dict):
        raise CheckpointFileError(f"{path} does not hold checkpoint metadata (found {type(metadata).__name__})")
    for info in metadata.storage_data.values():
        if not (isinstance(info, _StorageInfo) and isinstance(info.relative_path, str)
                and info.relative_path == Path(info.relative_path).name and not info.relative_path.startswith(".")
                and isinstance(info.offset, int) and isinstance(info.length, int) and info.offset >= 0
                and info.length >= 0 and not info.transform_descriptors):
            raise CheckpointFileError(f"{path} names data outside its folder or in a form ember does not write: "
                                      f"{info!r}")
    return metadata


# DCP's metadata is a pickle of these classes and nothing else (torch 2.4-2.13).
_METADATA_CLASSES = {
    ("torch.distributed.checkpoint.metadata", name) for name in (
        "Metadata", "MetadataIndex", "StorageMeta", "TensorProperties", "TensorStorageMetadata",
        "BytesStorageMetadata", "ChunkStorageMetadata", "_MEM_FORMAT_ENCODING")
} | {("torch.distributed.checkpoint.filesystem", "_StorageInfo"), ("torch", "Size"),
     ("torch.serialization", "_get_layout"), ("pathlib", "PosixPath"), ("pathlib", "WindowsPath"),
     ("collections", "OrderedDict")}


class _MetadataUnpickler(pickle.Unpickler):
    """Resolves only DCP's metadata classes and torch dtypes: any other global (os.system, eval...)
    is refused before it can be called."""

    def find_class(self, module, name):
        if (module, name) in _METADATA_CLASSES or (module == "torch" and isinstance(getattr(torch, name, None),
                                                                                    torch.dtype)):
            return super().find_class(module, name)
        raise CheckpointFileError(f"checkpoint metadata refers to {module}.{name}, which is not part of a "
                                  "checkpoint: refused (a pickle naming it could run code)")


class _CheckedReader(dcp.FileSystemReader):
    def read_metadata(self, *args, **kwargs) -> Metadata:
        metadata = read_checkpoint_metadata(self.path)
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


class _WeightsOnlyLoadPlanner(DefaultLoadPlanner):
    """DefaultLoadPlanner, except that non-tensor values (optimizer hyper-parameters) are read with
    `weights_only=True`: numbers, strings, tuples and dicts, never arbitrary objects."""

    def load_bytes(self, read_item, value) -> None:
        loaded = torch.load(value, weights_only=True)
        if self.flatten_state_dict:
            set_element(self.original_state_dict, self.mappings[read_item.dest_index.fqn], loaded)
        else:
            self.state_dict[read_item.dest_index.fqn] = loaded


def gather_state_dict(model) -> dict:
    """The full (unsharded) weights as CPU tensors on rank 0, an empty dict on other ranks.
    Under FSDP every rank must call it."""
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return full if _is_main() else {}


def scatter_state_dict(model, full: dict):
    """The inverse of gather_state_dict: rank 0's full weights into every rank's shards. Under FSDP
    every rank must call it (the other ranks' `full` is not read)."""
    set_model_state_dict(model, full, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
    return model


def _check_fits(model_state, stored, directory):
    expected = {f"model.{name}": tuple(tensor.shape) for name, tensor in model_state.items()
                if isinstance(tensor, torch.Tensor)}
    found = {key: tuple(meta.size) for key, meta in stored.items()
             if key.startswith("model.") and isinstance(meta, TensorStorageMetadata)}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    reshaped = [f"{key[6:]}: checkpoint {found[key]}, model {expected[key]}"
                for key in sorted(set(expected) & set(found)) if found[key] != expected[key]]
    if missing or unexpected or reshaped:
        problems = []
        if missing:
            problems.append(f"missing from the checkpoint: {', '.join(k[6:] for k in missing[:8])}")
        if unexpected:
            problems.append(f"not in this model: {', '.join(k[6:] for k in unexpected[:8])}")
        if reshaped:
            problems.append("different shapes: " + "; ".join(reshaped[:8]))
        raise CheckpointMismatchError(f"the checkpoint at {directory} was written by a different model ("
                                      + "; ".join(problems) + ")")


def _is_main() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def _barrier():
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
