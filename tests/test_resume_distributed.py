"""Exact resume under DDP: two processes on gloo, one SIGKILLed mid-epoch (torchrun stops the
other), the job launched again until it finishes; the final weights and history equal those of
an uninterrupted two-process run.

Run through `ember launch -n 2 tests/test_resume_distributed.py OUT BACKUP_DIR KILL_AT`, this file
is the worker: rank 1 SIGKILLs itself after its KILL_AT-th batch (0: never).
"""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).resolve()


def worker(out: Path, backup_dir: str, kill_at: int) -> None:
    import numpy as np

    import ember
    from ember import layers
    from ember.callbacks import BackupAndRestore, LambdaCallback
    from ember.io import atomic_write_text

    batches = [0]

    def maybe_die(batch, logs):
        batches[0] += 1
        if int(os.environ["RANK"]) == 1 and batches[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    ember.seed(3)
    x = np.random.rand(72, 6).astype("float32")
    y = (x[:, 0] > 0.5).astype("int64")
    model = ember.Sequential([layers.Dense(16, activation="relu"), layers.Dropout(0.3), layers.Dense(2)])
    model.compile("adamw", "cross_entropy", ["accuracy"], lr=0.01)
    history = model.fit(x, y, batch_size=12, epochs=3, verbose=0, strategy="ddp",
                        callbacks=[LambdaCallback(on_train_batch_end=maybe_die),
                                   BackupAndRestore(backup_dir, save_freq=2)])
    if int(os.environ["RANK"]) == 0:
        model.save_weights(out / "final.safetensors")
        atomic_write_text(out / "history.json", json.dumps(history.history))


def _launch(out, backup_dir, kill_at):
    out.mkdir(exist_ok=True)
    command = [sys.executable, "-m", "ember.cli", "launch", "-n", "2", str(WORKER), str(out), str(backup_dir),
               str(kill_at)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.slow
def test_ddp_job_killed_mid_epoch_resumes_bit_identical(tmp_path):
    import torch
    from safetensors.torch import load_file

    reference = _launch(tmp_path / "reference", tmp_path / "reference-backup", 0)
    assert reference.returncode == 0, reference.stderr[-3000:]
    out, backup_dir = tmp_path / "run", tmp_path / "backup"
    died = _launch(out, backup_dir, 9)  # 6 global batches an epoch: dies in epoch 2, after its 3rd
    assert died.returncode != 0
    assert sorted(p.name for p in backup_dir.glob("backup-*.zip")) == ["backup-000001-000000000.zip",
                                                                        "backup-000001-000000002.zip"]
    finished = _launch(out, backup_dir, 0)
    assert finished.returncode == 0, finished.stderr[-3000:]
    weights, expected = load_file(out / "final.safetensors"), load_file(tmp_path / "reference" / "final.safetensors")
    assert weights.keys() == expected.keys()
    for name in weights:
        assert torch.equal(weights[name], expected[name]), name
    assert json.loads((out / "history.json").read_text()) == \
        json.loads((tmp_path / "reference" / "history.json").read_text())


if __name__ == "__main__":
    worker(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
