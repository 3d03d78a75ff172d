import subprocess
import sys
import textwrap
import types

import pytest
import torch
import torch.distributed as dist

from ember.distributed import environment
from ember.distributed.environment import Job, detect_job, init_process_group, rank_device

TORCHRUN = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "node0", "MASTER_PORT": "29500"}
PYTORCHJOB = {"MASTER_ADDR": "job-master-0", "MASTER_PORT": "23456", "WORLD_SIZE": "3", "RANK": "2",
              "PET_NPROC_PER_NODE": "auto"}  # the operator's default
SLURM = {"SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_STEP_NUM_TASKS": "8", "SLURM_NTASKS": "8",
         "SLURM_JOB_ID": "123456", "SLURM_NODELIST": "gpu[07-09,12],cpu01", "SLURM_JOB_NODELIST": "other01"}


@pytest.fixture
def process_group_of_one():
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_alone_there_is_no_job():
    assert detect_job({}) is None
    assert detect_job({**SLURM, "SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "1"}) is None  # srun -n 1 python


def test_the_batch_script_itself_is_one_process_and_refused_as_several():
    """sbatch runs the script as task 0 (SLURM_PROCID=0) but not as a step of srun (no SLURM_STEP_NUM_TASKS)."""
    batch = {"SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NTASKS": "1", "SLURM_JOB_ID": "7",
             "SLURM_NODELIST": "gpu07", "MASTER_ADDR": "gpu07"}  # a MASTER_ADDR exported for later srun steps
    assert detect_job(batch) is None
    with pytest.raises(RuntimeError, match=r"SLURM_NTASKS=4 but srun did not start this process.*`srun python"):
        detect_job({**batch, "SLURM_NTASKS": "4"})


def test_torchrun_gives_its_variables_and_wins_inside_a_slurm_allocation():
    assert detect_job(TORCHRUN) == Job(3, 4, 1, "node0", 29500, "torchrun")
    assert detect_job({**SLURM, **TORCHRUN}) == Job(3, 4, 1, "node0", 29500, "torchrun")


def test_a_pytorchjob_pod_runs_one_process_unless_told_otherwise():
    assert detect_job(PYTORCHJOB) == Job(2, 3, 0, "job-master-0", 23456, "pytorchjob")
    assert detect_job({**PYTORCHJOB, "LOCAL_WORLD_SIZE": "2"}).local_rank == 0  # rank 2 of 2 per machine
    assert detect_job({**PYTORCHJOB, "RANK": "1", "LOCAL_WORLD_SIZE": "2"}).local_rank == 1
    assert detect_job({**PYTORCHJOB, "PET_NPROC_PER_NODE": "1"}).local_rank == 0
    with pytest.raises(RuntimeError, match="PET_NPROC_PER_NODE=4 but LOCAL_RANK is not set.*`ember launch"):
        detect_job({**PYTORCHJOB, "PET_NPROC_PER_NODE": "4"})


def test_a_slurm_task_meets_on_the_first_host_at_a_port_from_the_job_id():
    assert detect_job(SLURM) == Job(5, 8, 1, "gpu07", 10000 + 123456 % 20000, "slurm")
    job_nodelist_only = {name: value for name, value in SLURM.items() if name != "SLURM_NODELIST"}
    assert detect_job(job_nodelist_only).master_addr == "other01"
    assert detect_job({**SLURM, "SLURM_STEP_NODELIST": "gpu[08-09]"}).master_addr == "gpu08"  # srun's own step
    job = detect_job({**SLURM, "MASTER_ADDR": "10.0.0.9", "MASTER_PORT": "29400"})
    assert (job.master_addr, job.master_port) == ("10.0.0.9", 29400)
    assert detect_job({**SLURM, "SLURM_NTASKS": "16"}).world_size == 8  # srun --preserve-env keeps the allocation's


@pytest.mark.parametrize("environ, message", [
    ({"RANK": "0", "WORLD_SIZE": "2"},
     "Kubeflow PyTorchJob pod.*RANK, WORLD_SIZE set but MASTER_ADDR, MASTER_PORT missing"),
    ({"LOCAL_RANK": "0"}, "torchrun / `ember launch` worker.*LOCAL_RANK set but RANK, WORLD_SIZE, MASTER_ADDR"),
    ({"MASTER_ADDR": "node0"}, "torchrun / `ember launch` worker: MASTER_ADDR set but RANK, WORLD_SIZE"),
    ({"SLURM_PROCID": "0"}, "Slurm task.*SLURM_PROCID set but SLURM_STEP_NUM_TASKS or SLURM_NTASKS missing"),
    ({"SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "2", "SLURM_LOCALID": "0", "SLURM_JOB_ID": "1"},
     "SLURM_STEP_NODELIST or SLURM_NODELIST or SLURM_JOB_NODELIST or MASTER_ADDR missing"),
    ({"SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "2", "SLURM_LOCALID": "0", "SLURM_NODELIST": "n1"},
     "SLURM_JOB_ID or MASTER_PORT missing"),
    ({**TORCHRUN, "RANK": "first"}, "RANK='first' is not a whole number"),
    ({**TORCHRUN, "RANK": "4"}, "rank 4 .* does not fit a world of 4 processes"),
    ({**SLURM, "SLURM_NODELIST": "gpu[07"}, "unbalanced brackets"),
])
def test_a_half_set_environment_is_refused_naming_what_it_looked_like_and_what_is_missing(environ, message):
    with pytest.raises((RuntimeError, ValueError), match=message):
        detect_job(environ)


def test_an_existing_process_group_is_used_as_it_is(process_group_of_one, monkeypatch):
    assert detect_job({}) == Job(0, 1, 0, None, None, "existing-process-group")
    assert detect_job({**TORCHRUN, "LOCAL_RANK": "2"}).local_rank == 2  # the group's rank, the launcher's GPU
    ray_train = types.SimpleNamespace(get_context=lambda: types.SimpleNamespace(get_local_rank=lambda: 3))
    monkeypatch.setitem(sys.modules, "ray.train", ray_train)  # as in a Ray Train worker
    assert detect_job({}).local_rank == 3
    group = dist.group.WORLD
    init_process_group(detect_job({}), torch.device("cpu"))
    assert dist.group.WORLD is group


@pytest.mark.parametrize("job, init_method", [
    (Job(1, 2, 0, "node0", 29500, "torchrun"), "env://"),  # the torchrun agent's store
    (Job(1, 2, 0, "gpu07", 14242, "slurm"), "tcp://gpu07:14242"),
    (Job(1, 2, 0, "fd00::7", 23456, "pytorchjob"), "tcp://[fd00::7]:23456"),
])
def test_the_process_group_meets_where_the_job_says_without_touching_the_environment(job, init_method, monkeypatch):
    calls = []
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda *args, **kwargs: calls.append((args, kwargs)))
    before = dict(environment.os.environ)
    init_process_group(job, torch.device("cpu"), timeout=5)
    [(args, kwargs)] = calls
    assert args == ("gloo",) and kwargs["init_method"] == init_method
    assert (kwargs["rank"], kwargs["world_size"], kwargs["timeout"].total_seconds()) == (1, 2, 5)
    assert dict(environment.os.environ) == before


@pytest.mark.parametrize("visible, local_rank, index", [(1, 3, 0), (4, 3, 3)])
def test_a_process_drives_its_local_ranks_gpu_or_the_only_one_it_sees(visible, local_rank, index, monkeypatch):
    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: visible)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    assert rank_device(Job(7, 8, local_rank, "gpu07", 14242, "slurm")) == torch.device("cuda", index)
    assert chosen == [index]


@pytest.mark.parametrize("ending, destroyed", [("pass", True), ("raise SystemExit(3)", True),
                                               ("raise ValueError('boom')", False)])
def test_the_group_ember_made_is_destroyed_at_exit_unless_the_process_died_of_an_error(ending, destroyed):
    """Left to the interpreter's teardown, gloo can abort a process that succeeded (exit -6); after
    an uncaught error the other ranks may be inside a collective, so the group is left alone."""
    script = textwrap.dedent(f"""
        import atexit
        import torch, torch.distributed as dist
        from ember.distributed.environment import init_process_group
        atexit.register(lambda: print("initialized at the end:", dist.is_initialized()))  # runs after ember's
        init_process_group(None, torch.device("cpu"))
        assert dist.is_initialized()
        {ending}
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert f"initialized at the end: {not destroyed}" in done.stdout, done.stderr
