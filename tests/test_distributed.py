"""DDP and FSDP2 with 2 CPU processes on gloo, started by torchrun, on two (virtual) machines,
as a Kubeflow PyTorchJob and as a Slurm step: the same fit() gives the weights
single-process training gives, on the same global batches.

This file is also the script every process runs: `python test_distributed.py train ...`
(see `worker` at the bottom).
"""
import json
import os
import random
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch import nn

import ember
import ember.distributed
from ember.distributed.slurm import rendezvous_port

WORKER = Path(__file__).resolve()
DISTRIBUTED_GUIDE = WORKER.parents[1] / "docs" / "guides" / "distributed.md"
EMBER = [sys.executable, "-m", "ember.cli"]


class Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.linear = nn.Linear(width, width)

    def forward(self, x):
        return x + torch.tanh(self.linear(x))


class TinyNet(ember.Model):
    """Repeated blocks, so FSDP shards each block as its own group."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Linear(4, 8)
        self.blocks = nn.ModuleList([Block(8), Block(8)])
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def data():
    # 17 samples in global batches of 8: 8, 8, then 1 (rank 1's share of the last is empty)
    rng = np.random.default_rng(1)
    return rng.normal(size=(17, 4)).astype("float32"), rng.integers(0, 3, 17)


def fit(strategy=None, shuffle=True, verbose=0, callbacks=(), validation_rows=None):
    """validation_rows: a list to append the size of every batch the model sees in eval mode."""
    ember.seed(0)
    model = TinyNet()
    if validation_rows is not None:
        model.register_forward_hook(lambda m, args, out: None if m.training else validation_rows.append(len(out)))
    # SGD, not Adam: Adam's update hardly changes when gradients are scaled, which would hide a
    # wrongly averaged gradient. The clipping threshold only bites on outliers. fp32: bf16 (auto on
    # CPUs with AMX) rounds a rank's half batch differently from the whole one, beyond atol 1e-5.
    model.compile("sgd", loss="cross_entropy", metrics=["accuracy"], lr=0.2, momentum=0.5,
                  clip_grad_norm=5.0, precision="fp32")
    x, y = data()
    history = model.fit(x, y, batch_size=8, epochs=3, shuffle=shuffle, strategy=strategy, verbose=verbose,
                        validation_data=(x[:5], y[:5]), callbacks=list(callbacks))
    return model, history.history


def launch(args, timeout=120, env=None):
    """`ember launch ... WORKER args`: the job's CompletedProcess."""
    return subprocess.run([*EMBER, "launch", *args], capture_output=True, text=True, timeout=timeout,
                          env=alone_environment(**(env or {})))


def alone_environment(**variables):
    """This environment without what a launcher or a scheduler set (pytest may run in a Slurm job), plus
    variables; the processes import this checkout's ember (an editable install may point at another)."""
    launchers = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    alone = {name: value for name, value in os.environ.items()
             if name not in launchers and not name.startswith(("SLURM_", "PET_", "TORCHELASTIC_"))}
    path = os.pathsep.join(filter(None, [str(WORKER.parents[1]), os.environ.get("PYTHONPATH")]))
    return {**alone, "PYTHONPATH": path, **variables}


def run_together(processes, logs: Path, timeout=120):
    """Start every (command, environment) at once and wait for all; a failure shows that process's output."""
    started = []
    for i, (command, environment) in enumerate(processes):
        with open(logs / f"process{i}.log", "w") as log:
            started.append(subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT))
    deadline = time.monotonic() + timeout
    try:
        for process in started:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass  # the others are stuck waiting for a failed one: its log says why
    finally:
        for process in started:
            process.kill()
            process.wait()
    for i, process in enumerate(started):
        assert process.returncode == 0, f"process {i}: {(logs / f'process{i}.log').read_text()[-3000:]}"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def train_with_ddp(out: Path) -> list:
    """The command each process runs when no launcher starts them."""
    return [sys.executable, str(WORKER), "train", "ddp", str(out), "--shuffle"]


def assert_same_run(out: Path, shuffle, how="torchrun"):
    """`how` started the processes: named in a failure."""
    reference, reference_history = fit(shuffle=shuffle)
    weights = torch.load(out / "weights.pt")
    assert set(weights) == set(reference.state_dict()), how
    for name, tensor in reference.state_dict().items():
        torch.testing.assert_close(weights[name], tensor, atol=1e-5, rtol=0, msg=lambda m: f"{name} ({how}): {m}")
    history = json.loads((out / "history.json").read_text())
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(history[key], reference_history[key], atol=1e-5, err_msg=f"{key} ({how})")
    rows = [json.loads((out / f"validation_rows_{rank}.json").read_text()) for rank in (0, 1)]
    assert rows == [[3], [2]], how  # the 5 validation samples split across the 2 ranks, not evaluated by both


@pytest.mark.slow
def test_ddp_matches_single_process_and_only_rank0_prints(tmp_path):
    logs = tmp_path / "logs"
    job = launch(["-n", "2", "--redirects", "3", "--log-dir", str(logs), str(WORKER), "train", "ddp",
                  str(tmp_path), "--shuffle", "--verbose"])
    assert job.returncode == 0, job.stderr[-3000:]
    assert_same_run(tmp_path, shuffle=True)
    printed = {p.parent.name: p.read_text() for p in logs.rglob("stdout.log")}
    assert set(printed) == {"0", "1"}
    assert "Epoch 3/3" in printed["0"] and "val_accuracy" in printed["0"]
    assert printed["1"] == ""


@pytest.mark.slow
def test_fsdp_matches_single_process_and_its_checkpoints_load_into_one_process(tmp_path):
    job = launch(["-n", "2", str(WORKER), "train", "fsdp", str(tmp_path), "--checkpoint"])
    assert job.returncode == 0, job.stderr[-3000:]
    assert_same_run(tmp_path, shuffle=False)
    predictions = np.load(tmp_path / "predictions.npy")
    for load in (lambda m: ember.distributed.load_checkpoint(m, tmp_path / "checkpoint"),
                 lambda m: m.load_weights(tmp_path / "final.safetensors"),  # model.save_weights under FSDP
                 lambda m: m.load_weights(tmp_path / "epoch3.safetensors")):  # ModelCheckpoint under FSDP
        model = TinyNet()
        load(model)
        np.testing.assert_allclose(model.predict(data()[0]), predictions, atol=1e-6)


@pytest.mark.slow
def test_one_rank_crashing_fails_the_job_with_its_error(tmp_path):
    start = time.monotonic()
    job = launch(["-n", "2", str(WORKER), "crash", "ddp", str(tmp_path)], timeout=90)
    assert job.returncode != 0
    assert time.monotonic() - start < 60
    assert "rank 1 crashed on purpose" in job.stderr
    assert "ember launch: worker rank 1" in job.stderr


def guide_multi_node_command():
    """The distributed guide's multi-node command, which this test runs as written (with its $HOST and $PORT)."""
    lines = [line.strip() for line in DISTRIBUTED_GUIDE.read_text().splitlines() if line.strip().startswith("ember launch --nnodes")]
    assert len(lines) == 1, "the distributed guide shows one multi-node command"
    return lines[0]


@pytest.mark.slow
def test_two_nodes_meeting_through_c10d_rendezvous_train_like_one(tmp_path):
    """The guide's command on two machines: two network namespaces joined by a veth pair where
    they can be made (root), else twice on this machine's loopback."""
    from testing.two_machines import two_machines  # not at the top: the workers run this file without testing/

    with two_machines() as machines:
        if machines:
            how, host, port = "two network namespaces joined by a veth pair", machines[0].address, 29400
            on = [machine.command for machine in machines]
        else:
            how, host, port = "loopback", "127.0.0.1", free_port()
            on = [lambda argv: argv] * 2  # twice on this machine
        print(f"two-node test: {how}, rendezvous at {host}:{port}")
        command = guide_multi_node_command().replace("$HOST", host).replace("$PORT", str(port))
        script = shlex.split(command)[1:]  # drop "ember": run this interpreter's ember.cli
        script = script[:script.index("train.py")] + [str(WORKER), "train", "ddp", str(tmp_path), "--shuffle"]
        run_together([(run_on([*EMBER, *script]), alone_environment()) for run_on in on], tmp_path)
    assert_same_run(tmp_path, shuffle=True, how=how)


@pytest.mark.slow
def test_a_kubeflow_pytorchjob_trains_like_one_process(tmp_path):
    """Two processes started without a launcher, each with what a PyTorchJob gives its pod: no LOCAL_RANK."""
    port = free_port()
    pods = [alone_environment(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank),
                              PYTHONUNBUFFERED="0") for rank in (0, 1)]
    run_together([(train_with_ddp(tmp_path), pod) for pod in pods], tmp_path)
    assert_same_run(tmp_path, shuffle=True, how="PyTorchJob")


@pytest.mark.slow
def test_a_slurm_step_of_two_tasks_trains_like_one_process(tmp_path):
    """Two processes started with what `srun -n 2` on one node gives its tasks, but by this test (the
    srun test below runs a real one-node cluster where slurm-wlm is installed). Rank 0 serves the store
    on the node list's first host, localhost, at the port derived from the job id."""
    job_id = next(job for job in random.sample(range(100_000, 120_000), 50) if port_is_free(rendezvous_port(job)))
    step = dict(SLURM_JOB_ID=str(job_id), SLURM_NTASKS="2", SLURM_NPROCS="2", SLURM_STEP_ID="0",
                SLURM_STEP_NUM_TASKS="2", SLURM_NNODES="1", SLURM_NODEID="0", SLURM_TASKS_PER_NODE="2",
                SLURM_NODELIST="localhost", SLURM_JOB_NODELIST="localhost", SLURM_STEP_NODELIST="localhost")
    tasks = [alone_environment(**step, SLURM_PROCID=str(rank), SLURM_LOCALID=str(rank)) for rank in (0, 1)]
    run_together([(train_with_ddp(tmp_path), task) for task in tasks], tmp_path)
    assert_same_run(tmp_path, shuffle=True, how="Slurm step")


@pytest.mark.slow
def test_srun_on_a_one_node_slurm_cluster_trains_like_one_process(tmp_path):
    """`srun -n 2` on a real one-node Slurm cluster (Debian's slurm-wlm, started by this test): the two
    tasks find each other from what Slurm sets alone. Skipped, saying why, where slurm-wlm is absent."""
    from testing.slurm_cluster import missing, slurm_cluster

    if why := missing():
        pytest.skip(why)
    with slurm_cluster(tmp_path / "slurm") as env:
        path = os.pathsep.join(filter(None, [str(WORKER.parents[1]), os.environ.get("PYTHONPATH")]))
        step = subprocess.run(["srun", "-n", "2", "--kill-on-bad-exit=1", *train_with_ddp(tmp_path)],
                              env={**env, "PYTHONPATH": path}, capture_output=True, text=True, timeout=300)
    assert step.returncode == 0, step.stdout[-2000:] + step.stderr[-3000:]
    assert (tmp_path / "validation_rows_1.json").exists(), "the tasks did not form one group of two"
    assert_same_run(tmp_path, shuffle=True, how="srun -n 2")


# ----------------------------------------------------------------- worker
def worker(argv):
    """Runs on every rank. `train STRATEGY OUT [--shuffle] [--verbose] [--checkpoint]`: fit and
    write rank 0's view of the result; `crash STRATEGY OUT`: rank 1 fails in the second batch."""
    task, strategy, out = argv[0], argv[1], Path(argv[2])
    if task == "crash":
        def fail(batch, logs):
            if dist.get_rank() == 1 and batch == 1:
                raise RuntimeError("rank 1 crashed on purpose")

        fit(strategy, callbacks=[ember.callbacks.LambdaCallback(on_train_batch_begin=fail)])
        return
    saves = "--checkpoint" in argv
    every_epoch = [ember.callbacks.ModelCheckpoint(str(out / "epoch{epoch}.safetensors"), save_weights_only=True)]
    validation_rows = []
    record = ember.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: validation_rows.clear())
    model, history = fit(strategy, shuffle="--shuffle" in argv, verbose=int("--verbose" in argv),
                         callbacks=[record, *(every_epoch if saves else ())], validation_rows=validation_rows)
    rank = dist.get_rank()  # whatever started the processes, fit() joined their group
    (out / f"validation_rows_{rank}.json").write_text(json.dumps(validation_rows))  # the last epoch's
    weights = ember.distributed.gather_state_dict(model)
    predictions = model.predict(data()[0])
    if saves:
        ember.distributed.save_checkpoint(model, out / "checkpoint")
        model.save_weights(out / "final.safetensors")  # every rank calls it; rank 0 writes the gathered weights
    if rank == 0:
        torch.save(weights, out / "weights.pt")
        (out / "history.json").write_text(json.dumps(history))
        np.save(out / "predictions.npy", predictions)


if __name__ == "__main__":
    worker(sys.argv[1:])
