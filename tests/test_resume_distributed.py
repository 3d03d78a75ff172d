"""Exact resume under DDP and FSDP2: two processes on gloo, one SIGKILLed mid-epoch (torchrun
stops the other), or one or both sent a preemption signal (they agree to back up at the same
step and exit), the job launched again until it finishes; the final weights and history equal
those of an uninterrupted two-process run. FSDP backups hold each rank's shard (DCP), so the
resumed FSDP run is also checked from one process.

Run through `ember launch -n 2 tests/test_resume_distributed.py STRATEGY OUT BACKUP_DIR KILL`,
this file is the worker: with KILL a number N, rank 1 SIGKILLs itself after its N-th batch (0:
never); with "pause:N" every rank waits after its N-th batch for the test to signal it
(testing/preemption.py).
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testing.preemption import (JOB_ID, go, paused_pids, scontrol_calls, signal_paused, slurm_with_fake_scontrol,
                                started)

WORKER = Path(__file__).resolve()
ROOT = WORKER.parents[1]


def worker(strategy: str, out: Path, backup_dir: str, kill: str) -> None:
    import ember
    from ember.callbacks import BackupAndRestore, EarlyStopping, LambdaCallback
    from ember.distributed import gather_state_dict
    from ember.io import atomic_write_text
    from safetensors.torch import save_file
    from testing.preemption import pause

    batches, (kind, _, count) = [0], kill.rpartition(":")

    def maybe_die(batch, logs):
        batches[0] += 1
        if batches[0] != int(count):
            return
        if kind == "pause":
            pause(out, f"rank{os.environ['RANK']}")
        elif int(os.environ["RANK"]) == 1:
            os.kill(os.getpid(), signal.SIGKILL)

    ember.seed(3)
    x, y = data()
    model = make_model()
    model.compile("adamw", "cross_entropy", ["accuracy"], lr=0.01)
    history = model.fit(x, y, batch_size=12, epochs=3, verbose=0, strategy=strategy,
                        callbacks=[LambdaCallback(on_train_batch_end=maybe_die),
                                   # its best weights (gathered to rank 0 under FSDP) go into every backup
                                   EarlyStopping("loss", patience=50, restore_best_weights=True),
                                   BackupAndRestore(backup_dir, save_freq=2)])
    weights = gather_state_dict(model)  # under FSDP a collective: every rank takes part, rank 0 gets them
    if int(os.environ["RANK"]) == 0:
        save_file({name: tensor.contiguous() for name, tensor in weights.items()}, out / "final.safetensors")
        atomic_write_text(out / "history.json", json.dumps(history.history))


def make_model():
    import ember
    from ember import layers

    return ember.Sequential([layers.Dense(16, activation="relu"), layers.Dropout(0.3), layers.Dense(2)])


def data():
    import numpy as np

    x = np.random.default_rng(3).random((72, 6), dtype="float32")
    return x, (x[:, 0] > 0.5).astype("int64")


def _launch_command(strategy, out, backup_dir, kill, env=None) -> dict:
    """`ember launch`'s subprocess arguments; `env`: variables to add. The workers import this
    checkout's ember (and testing/), whatever is installed."""
    out.mkdir(exist_ok=True)
    command = [sys.executable, "-m", "ember.cli", "launch", "-n", "2", str(WORKER), strategy, str(out),
               str(backup_dir), str(kill)]
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), **(env or {})}
    return dict(args=command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _launch(strategy, out, backup_dir, kill, env=None):
    return subprocess.run(**_launch_command(strategy, out, backup_dir, kill, env), timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_job_killed_mid_epoch_resumes_bit_identical(tmp_path, strategy):
    reference = _launch(strategy, tmp_path / "reference", tmp_path / "reference-backup", 0)
    assert reference.returncode == 0, reference.stderr[-3000:]
    out, backup_dir = tmp_path / "run", tmp_path / "backup"
    died = _launch(strategy, out, backup_dir, 9)  # 6 global batches an epoch: dies in epoch 2, after its 3rd
    assert died.returncode != 0
    backups = ["backup-000001-000000000", "backup-000001-000000002"]
    assert sorted(p.name for p in backup_dir.glob("backup-*.zip")) == [f"{b}.zip" for b in backups]
    if strategy == "fsdp":
        assert sorted(p.name for p in backup_dir.glob("backup-*.shards")) == [f"{b}.shards" for b in backups]
        _check_backup_loads_into_one_process(backup_dir / f"{backups[-1]}.shards")
    finished = _launch(strategy, out, backup_dir, 0)
    assert finished.returncode == 0, finished.stderr[-3000:]
    _assert_same_outputs(out, tmp_path / "reference")


def _assert_same_outputs(out, reference):
    import torch
    from safetensors.torch import load_file

    weights, expected = load_file(out / "final.safetensors"), load_file(reference / "final.safetensors")
    assert weights.keys() == expected.keys()
    for name in weights:
        assert torch.equal(weights[name], expected[name]), name
    assert json.loads((out / "history.json").read_text()) == json.loads((reference / "history.json").read_text())


@pytest.fixture(scope="module")
def ddp_reference(tmp_path_factory):
    """The outputs folder of an uninterrupted two-process DDP run."""
    folder = tmp_path_factory.mktemp("ddp-reference")
    reference = _launch("ddp", folder / "run", folder / "backup", 0)
    assert reference.returncode == 0, reference.stderr[-3000:]
    return folder / "run"


@pytest.mark.slow
@pytest.mark.parametrize("signalled,signum,slurm", [
    pytest.param(["rank1"], signal.SIGUSR1, True, id="rank1-SIGUSR1-slurm"),
    pytest.param(["rank0", "rank1"], signal.SIGTERM, False, id="both-SIGTERM"),
    pytest.param("launcher", signal.SIGUSR1, True, id="launcher-SIGUSR1-slurm")])
def test_preempted_job_backs_up_at_one_step_and_resumes_bit_identical(tmp_path, ddp_reference, signalled, signum,
                                                                     slurm):
    """A preemption signal to one rank, to both, or to `ember launch` (which passes it on): every
    rank backs up after the same step, the job exits with 128 + the signal's number, rank 0 alone
    requeues a Slurm job on SIGUSR1, and the job launched again ends as the uninterrupted one."""
    out, backup_dir, slurm_bin = tmp_path / "run", tmp_path / "backup", tmp_path / "bin"
    env = slurm_with_fake_scontrol(slurm_bin) if slurm else {}
    with started(**_launch_command("ddp", out, backup_dir, "pause:4", env)) as job:
        if signalled == "launcher":
            paused_pids(out, ["rank0", "rank1"], job)
            os.kill(job.pid, signum)
            time.sleep(3)  # for the launcher to pass the signal on to the paused workers
            go(out)
        else:
            signal_paused(out, signalled, signum, job)
        _, stderr = job.communicate(timeout=300)
    assert job.returncode == 128 + signum, stderr[-3000:]
    # Both ranks paused after their 4th batch: the backup is of epoch 1, batch 4.
    assert sorted(p.name for p in backup_dir.glob("backup-*.zip"))[-1] == "backup-000000-000000004.zip"
    assert scontrol_calls(slurm_bin) == ([f"requeue {JOB_ID} rank=0"] if slurm else [])
    finished = _launch("ddp", out, backup_dir, 0, env)
    assert finished.returncode == 0, finished.stderr[-3000:]
    _assert_same_outputs(out, ddp_reference)


def _check_backup_loads_into_one_process(shards):
    """A sharded backup's weights and AdamW state load into a plain model in this process (DCP reshards)."""
    import torch

    from ember.distributed import load_checkpoint

    model = make_model().build((6,))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    model(torch.zeros(1, 6)).sum().backward()
    optimizer.step()  # AdamW's state exists only after a step: this creates the entries to load into
    load_checkpoint(model, shards, optimizer)
    assert all(int(state["step"]) == 8 for state in optimizer.state.values())  # 6 batches of epoch 1, 2 of epoch 2


if __name__ == "__main__":
    worker(sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4])
