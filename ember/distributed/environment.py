"""The launcher's environment (torchrun / `ember launch`) and the process group built from it.

torchrun exports RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT to every
worker; with none of them set, a strategy runs as one process.
"""
import contextlib
import datetime
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ember.io import atomic_write_text

REQUIRED = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class LauncherEnv:
    rank: int
    world_size: int
    local_rank: int


def launcher_env(environ=os.environ) -> LauncherEnv | None:
    """This worker's place in the job, or None when no launcher started it."""
    present = [name for name in REQUIRED if name in environ]
    if not present:
        return None
    missing = [name for name in REQUIRED if name not in environ]
    if missing:
        raise RuntimeError(f"incomplete launcher environment: {', '.join(present)} set but {', '.join(missing)} "
                           "missing. Start the script with `ember launch -n N script.py` or `torchrun "
                           "--nproc-per-node=N script.py`, or unset the variables to run as one process")
    return LauncherEnv(int(environ["RANK"]), int(environ["WORLD_SIZE"]), int(environ["LOCAL_RANK"]))


def rank_device(env: LauncherEnv | None) -> torch.device:
    """The accelerator this worker owns (its LOCAL_RANK-th GPU), or the CPU."""
    if torch.cuda.is_available():
        index = env.local_rank if env else torch.cuda.current_device()
        torch.cuda.set_device(index)  # so that "cuda" means this worker's GPU everywhere
        return torch.device("cuda", index)
    return torch.device("cpu")


def init_process_group(env: LauncherEnv | None, device: torch.device, timeout: float | None = None) -> None:
    """Join the launcher's process group (NCCL on GPU, gloo on CPU); without a launcher, a
    group of one. Does nothing when a group already exists."""
    if dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    options = {"timeout": datetime.timedelta(seconds=timeout)} if timeout else {}
    if env is None:
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1, **options)
    else:
        dist.init_process_group(backend, init_method="env://", rank=env.rank, world_size=env.world_size,
                                device_id=device if device.type == "cuda" else None, **options)


def report_errors_to_launcher() -> None:
    """Make an uncaught exception in this worker reach the launcher's failure summary (the
    error file torchrun names in TORCHELASTIC_ERROR_FILE) instead of just an exit code."""
    error_file = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not error_file or getattr(sys.excepthook, "reports_to_launcher", False):
        return
    previous = sys.excepthook

    def hook(kind, error, trace):
        if isinstance(error, Exception):
            # The layout torch.distributed.elastic's ErrorHandler writes and the launcher reads.
            record = {"message": {"message": f"{kind.__name__}: {error}", "extraInfo": {
                "py_callstack": "".join(traceback.format_exception(kind, error, trace)),
                "timestamp": str(int(time.time()))}}}
            with contextlib.suppress(OSError):
                atomic_write_text(error_file, json.dumps(record))
        previous(kind, error, trace)

    hook.reports_to_launcher = True
    sys.excepthook = hook
