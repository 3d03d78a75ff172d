"""Sharded checkpoints with `torch.distributed.checkpoint` (DCP).

Every rank writes its own shard in parallel (an FSDP model is never gathered on one
rank); loading reshards, so a checkpoint written by N processes loads into M, or into
one process with no launcher at all. Under a launcher, every rank calls these
functions (they are collectives), and the directory must be on storage every rank
sees. A checkpoint is written to `<directory>.partial` and renamed when complete, so an
interrupted save never replaces a good checkpoint with half of one.
"""
import os
import shutil
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.metadata import TensorStorageMetadata
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                     get_optimizer_state_dict, set_model_state_dict,
                                                     set_optimizer_state_dict)


class CheckpointMismatchError(ValueError):
    """The checkpoint holds a different model (other parameter names or shapes)."""


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
    if not (directory / ".metadata").is_file():
        raise FileNotFoundError(f"{directory} is not a checkpoint written by ember.distributed.save_checkpoint "
                                "(no .metadata file in it)")
    stored = dcp.FileSystemReader(directory).read_metadata().state_dict_metadata
    state = {"model": get_model_state_dict(model)}
    _check_fits(state["model"], stored, directory)
    if optimizer is not None:
        if not any(key.startswith("optimizer.") for key in stored):
            raise CheckpointMismatchError(f"{directory} holds no optimizer state: load it without optimizer=")
        state["optimizer"] = get_optimizer_state_dict(model, optimizer)
    dcp.load(state, checkpoint_id=directory)
    set_model_state_dict(model, state["model"])
    if optimizer is not None:
        set_optimizer_state_dict(model, optimizer, state["optimizer"])
    return model


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
