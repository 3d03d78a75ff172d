"""Exact resume under DDP and FSDP2: two processes on gloo, one SIGKILLed mid-epoch (torchrun
stops the other), the job launched again until it finishes; the final weights and history equal
those of an uninterrupted two-process run. FSDP backups hold each rank's shard (DCP), so the
resumed FSDP run is also checked from one process.

Run through `ember launch -n 2 tests/test_resume_distributed.py STRATEGY OUT BACKUP_DIR KILL_AT`,
this file is the worker: rank 1 SIGKILLs itself after its KILL_AT-th batch (0: never).
"""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).resolve()


def worker(strategy: str, out: Path, backup_dir: str, kill_at: int) -> None:
    import ember
    from ember.callbacks import BackupAndRestore, EarlyStopping, LambdaCallback
    from ember.distributed import gather_state_dict
    from ember.io import atomic_write_text
    from safetensors.torch import save_file

    batches = [0]

    def maybe_die(batch, logs):
        batches[0] += 1
        if int(os.environ["RANK"]) == 1 and batches[0] == kill_at:
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


def _launch(strategy, out, backup_dir, kill_at):
    out.mkdir(exist_ok=True)
    command = [sys.executable, "-m", "ember.cli", "launch", "-n", "2", str(WORKER), strategy, str(out),
               str(backup_dir), str(kill_at)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_job_killed_mid_epoch_resumes_bit_identical(tmp_path, strategy):
    import torch
    from safetensors.torch import load_file

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
    weights, expected = load_file(out / "final.safetensors"), load_file(tmp_path / "reference" / "final.safetensors")
    assert weights.keys() == expected.keys()
    for name in weights:
        assert torch.equal(weights[name], expected[name]), name
    assert json.loads((out / "history.json").read_text()) == \
        json.loads((tmp_path / "reference" / "history.json").read_text())


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
    worker(sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
