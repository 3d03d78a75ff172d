"""Where this process stands in a job of several processes, read from whatever started it,
and the process group built from that.

The first of these that applies wins:
1. a process group that already exists (Ray Train, or a script that called
   torch.distributed.init_process_group itself): used as it is, never initialized again;
2. torchrun / `ember launch`: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT (so
   torchrun started inside a Slurm allocation is torchrun);
3. a Kubeflow PyTorchJob pod: the same but LOCAL_RANK, which the operator does not set;
4. a Slurm step of several tasks (`srun`): SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_LOCALID,
   the step's first host and a port derived from the job id (MASTER_ADDR / MASTER_PORT override).
None of them: one process.
"""
import atexit
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

from ember.distributed.slurm import expand_hostlist, rendezvous_port
from ember.io import atomic_write_text

# What each environment looks like, for the errors, and how to complete it.
_LOOKS_LIKE = {
    "torchrun": ("a torchrun / `ember launch` worker",
                 "Start the script with `ember launch -n N script.py` or `torchrun --nproc-per-node=N script.py`, "
                 "or unset the variables to run as one process"),
    "pytorchjob": ("a Kubeflow PyTorchJob pod (RANK without LOCAL_RANK)",
                   "A PyTorchJob sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT in every pod; elsewhere start "
                   "the script with `ember launch` / torchrun, or unset the variables to run as one process"),
    "slurm": ("a Slurm task (SLURM_PROCID set)",
              "Start the tasks with `srun`, which sets these, or unset SLURM_PROCID to run as one process"),
}
_REQUIRED = {"torchrun": ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"),
             "pytorchjob": ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
_SLURM_NODELISTS = ("SLURM_STEP_NODELIST", "SLURM_NODELIST", "SLURM_JOB_NODELIST")


@dataclass(frozen=True)
class Job:
    """This process's place in a job of several processes."""
    rank: int
    world_size: int
    local_rank: int  # which of its machine's accelerators this process drives
    master_addr: str | None  # where rank 0 serves the rendezvous store (None: the group exists already)
    master_port: int | None
    environment: str  # "torchrun", "pytorchjob", "slurm" or "existing-process-group"

    def __post_init__(self):
        if not 0 <= self.rank < self.world_size or self.local_rank < 0:
            raise RuntimeError(f"{self.environment}: rank {self.rank} (local rank {self.local_rank}) does not fit "
                               f"a world of {self.world_size} processes")


def detect_job(environ=os.environ) -> Job | None:
    """This process's place in the job, or None when it runs alone."""
    if dist.is_available() and dist.is_initialized():
        return _existing_group(environ)
    if "RANK" in environ or "LOCAL_RANK" in environ:
        return _torchrun_or_pytorchjob(environ)
    if "SLURM_PROCID" in environ:
        return _slurm(environ)
    _require(environ, _REQUIRED["torchrun"], "torchrun")  # WORLD_SIZE or MASTER_* alone: a launcher half set
    return None


def _existing_group(environ) -> Job:
    if "LOCAL_RANK" in environ:
        local_rank = _int(environ, "LOCAL_RANK", "existing-process-group")
    else:
        # A Ray Train worker has imported ray.train; ray is no dependency of ember, so it is not imported here.
        ray_train = sys.modules.get("ray.train")
        local_rank = ray_train.get_context().get_local_rank() if ray_train else 0
    return Job(dist.get_rank(), dist.get_world_size(), local_rank, None, None, "existing-process-group")


def _torchrun_or_pytorchjob(environ) -> Job:
    environment = "torchrun" if "LOCAL_RANK" in environ else "pytorchjob"
    _require(environ, _REQUIRED[environment], environment)
    rank = _int(environ, "RANK", environment)
    if environment == "torchrun":
        local_rank = _int(environ, "LOCAL_RANK", environment)
    else:
        local_rank = _pod_local_rank(environ, rank)
    return Job(rank, _int(environ, "WORLD_SIZE", environment), local_rank, environ["MASTER_ADDR"],
               _int(environ, "MASTER_PORT", environment), environment)


def _pod_local_rank(environ, rank: int) -> int:
    """A PyTorchJob pod runs one process, unless a launcher of its own says how many share it."""
    if "LOCAL_WORLD_SIZE" in environ:
        return rank % _int(environ, "LOCAL_WORLD_SIZE", "pytorchjob")
    per_pod = environ.get("PET_NPROC_PER_NODE", "")  # the operator's default, "auto", means one per pod here
    if per_pod.isdigit() and int(per_pod) > 1:
        # The operator then counts WORLD_SIZE as pods x processes but sets RANK to the pod's index, for
        # torchrun to start the processes: one process per pod would wait for the others forever.
        raise RuntimeError(f"PET_NPROC_PER_NODE={per_pod} but LOCAL_RANK is not set: this PyTorchJob expects "
                           f"{per_pod} processes in each pod, started by torchrun. Make the pod's command "
                           "`ember launch script.py` or `torchrun script.py` (both read PET_NPROC_PER_NODE), "
                           "or set nprocPerNode to 1")
    return 0


def _slurm(environ) -> Job | None:
    _require(environ, ["SLURM_PROCID", ("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS")], "slurm")
    if "SLURM_STEP_NUM_TASKS" not in environ:
        # Not a task srun started (srun sets it): the batch script itself, which sbatch runs as task 0
        # of the allocation, with the allocation's SLURM_NTASKS. Alone, it would wait for the others forever.
        tasks = _int(environ, "SLURM_NTASKS", "slurm")
        if tasks > 1:
            raise RuntimeError(f"SLURM_NTASKS={tasks} but srun did not start this process (no SLURM_STEP_NUM_TASKS): "
                               f"in the batch script, start the training with `srun python script.py` ({tasks} "
                               "processes) or `srun --ntasks=1 python script.py` (one)")
        return None
    world_size = _int(environ, "SLURM_STEP_NUM_TASKS", "slurm")  # the step's; SLURM_NTASKS may be the allocation's
    if world_size == 1:
        return None
    _require(environ, ["SLURM_PROCID", "SLURM_LOCALID", (*_SLURM_NODELISTS, "MASTER_ADDR"),
                       ("SLURM_JOB_ID", "MASTER_PORT")], "slurm")
    nodelist = next((environ[name] for name in _SLURM_NODELISTS if name in environ), None)
    # MASTER_ADDR / MASTER_PORT set by hand win: rank 0 on another host than the step's first, two steps at once.
    master_addr = environ.get("MASTER_ADDR") or expand_hostlist(nodelist)[0]
    master_port = (_int(environ, "MASTER_PORT", "slurm") if "MASTER_PORT" in environ
                   else rendezvous_port(_int(environ, "SLURM_JOB_ID", "slurm")))
    return Job(_int(environ, "SLURM_PROCID", "slurm"), world_size, _int(environ, "SLURM_LOCALID", "slurm"),
               master_addr, master_port, "slurm")


def _require(environ, needed, environment: str) -> None:
    """Refuse an environment half set. Each needed item is a name, or a tuple of names any one of which will do."""
    alternatives = [(item,) if isinstance(item, str) else item for item in needed]
    present = [name for names in alternatives for name in names if name in environ]
    missing = [" or ".join(names) for names in alternatives if not any(name in environ for name in names)]
    if present and missing:
        looks_like, hint = _LOOKS_LIKE[environment]
        raise RuntimeError(f"incomplete environment for {looks_like}: {', '.join(present)} set but "
                           f"{', '.join(missing)} missing. {hint}")


def _int(environ, name: str, environment: str) -> int:
    try:
        return int(environ[name])
    except ValueError:
        raise RuntimeError(f"{name}={environ[name]!r} is not a whole number ({environment})") from None


def rank_device(job: Job) -> torch.device:
    """The accelerator this process drives (its local rank's GPU), or the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    # One GPU visible is this process's own (Slurm's --gpus-per-task, a pod's single GPU), whatever its local rank.
    index = 0 if torch.cuda.device_count() == 1 else job.local_rank
    torch.cuda.set_device(index)  # so that "cuda" means this process's GPU everywhere
    return torch.device("cuda", index)


def init_process_group(job: Job | None, device: torch.device, timeout: float | None = None) -> None:
    """Join the job's process group (NCCL on GPU, gloo on CPU); without a job, a group of one.
    Does nothing when a group already exists."""
    if dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    options = {"timeout": datetime.timedelta(seconds=timeout)} if timeout else {}
    if job is None:
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1, **options)
    else:
        dist.init_process_group(backend, init_method=_init_method(job), rank=job.rank, world_size=job.world_size,
                                device_id=device if device.type == "cuda" else None, **options)
    atexit.register(_destroy_at_exit, dist.group.WORLD)


def _destroy_at_exit(group) -> None:
    """Destroy the group this module made while the interpreter is still whole: left to the
    interpreter's teardown, gloo's worker threads can abort the process ("terminate called
    without an active exception", exit -6) after a run that succeeded. Not after an uncaught
    exception, where the other ranks may be inside a collective that would never end."""
    if hasattr(sys, "last_value") or not dist.is_initialized() or dist.group.WORLD is not group:
        return  # died of an exception, or the group was destroyed (and maybe replaced) by the script
    dist.destroy_process_group()


def _init_method(job: Job) -> str:
    if job.environment == "torchrun":
        # torchrun's agent already serves the store at MASTER_ADDR:MASTER_PORT and tells its workers
        # (TORCHELASTIC_USE_AGENT_STORE) to join it, which env:// does.
        return "env://"
    host = f"[{job.master_addr}]" if ":" in job.master_addr else job.master_addr  # an IPv6 address
    return f"tcp://{host}:{job.master_port}"  # rank 0 starts the store there, the others join it


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
