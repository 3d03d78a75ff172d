"""Distributed training for fit(): `strategy="ddp"` or `"fsdp"`, started by torchrun / `ember launch`,
Slurm's srun, a Kubeflow PyTorchJob or Ray Train.

Names load on first use: the trainer imports this package, and torch.distributed's
checkpoint and FSDP modules take seconds to import.
"""
import importlib
import sys

_EXPORTS = {
    "DDP": "ember.distributed.ddp", "FSDP": "ember.distributed.fsdp",
    "SingleProcess": "ember.distributed.strategy", "get_strategy": "ember.distributed.registry",
    "save_checkpoint": "ember.distributed.checkpoint", "load_checkpoint": "ember.distributed.checkpoint",
    "gather_state_dict": "ember.distributed.checkpoint", "scatter_state_dict": "ember.distributed.checkpoint",
    "CheckpointMismatchError": "ember.distributed.checkpoint", "CheckpointFileError": "ember.distributed.checkpoint",
}
__all__ = sorted(_EXPORTS)


def is_sharded(model) -> bool:
    """True for an FSDP2-sharded model, whose state_dict holds this rank's shards. Cheap: a model
    can only be sharded once torch's FSDP module has been imported."""
    fsdp = sys.modules.get("torch.distributed.fsdp")
    return fsdp is not None and isinstance(model, fsdp.FSDPModule)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ember.distributed' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
