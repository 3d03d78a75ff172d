"""Fault injection: a training process is SIGKILLed at random moments, including between writing
a backup and renaming it into place, and restarted until it finishes; or sent the signal a
scheduler sends before it stops a job, on which it backs up and exits. Its final weights, logged
history and CSV log must equal those of a run that was never interrupted, bit for bit.

Run as a script, this file is the training job: `python tests/test_resume.py OUT BACKUP_DIR DATA KILL`,
KILL being "none", "batch:N" (SIGKILL itself after its N-th batch), "rename:N" (SIGKILL itself
when its N-th backup is written and fsynced but not yet renamed into place) or "pause:N" (wait
after its N-th batch for the test to signal it, testing/preemption.py).
"""
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from testing.preemption import JOB_ID, scontrol_calls, signal_paused, slurm_with_fake_scontrol, started

EPOCHS, SAMPLES, BATCH = 4, 64, 8  # 32 batches
SAVE_EVERY = 3


def train(out: Path, backup_dir: str, data: str, kill: str) -> None:
    import numpy as np
    import torch

    import ember
    from ember import layers
    from ember.callbacks import BackupAndRestore, Callback, CSVLogger, EarlyStopping, ReduceLROnPlateau
    from ember.io import atomic_write_text
    from testing.preemption import pause

    kind, _, count = kill.partition(":")
    if kind == "rename":  # the moment ember.io renames a finished temporary file over a backup
        real_replace, renames = os.replace, [0]

        def replace(src, dst):
            if Path(dst).name.startswith("backup-"):
                renames[0] += 1
                if renames[0] == int(count):
                    os.kill(os.getpid(), signal.SIGKILL)
            real_replace(src, dst)

        os.replace = replace

    class KillAfterBatch(Callback):
        seen = 0

        def on_train_batch_end(self, batch, logs=None):
            KillAfterBatch.seen += 1
            if kind == "batch" and KillAfterBatch.seen == int(count):
                os.kill(os.getpid(), signal.SIGKILL)
            if kind == "pause" and KillAfterBatch.seen == int(count):
                pause(out, "job")

    ember.seed(2024)
    x = np.random.rand(SAMPLES, 10).astype("float32")
    y = (x[:, :3].sum(1) > 1.5).astype("int64")
    first = [layers.Rescaling(1 / 255), layers.Flatten()] if data in ("folder", "stream") else []
    model = ember.Sequential([*first, layers.Dense(16, activation="relu"), layers.Dropout(0.3), layers.Dense(2)])
    model.compile("adamw", "cross_entropy", ["accuracy"], lr=0.01, lr_schedule="cosine",
                  lr_schedule_interval="batch")
    callbacks = [KillAfterBatch(), EarlyStopping("loss", patience=50), ReduceLROnPlateau("loss", patience=1),
                 CSVLogger(out / "log.csv")]
    if backup_dir != "-":
        callbacks.append(BackupAndRestore(backup_dir, save_freq=SAVE_EVERY))
    if data == "dataset":  # a map-style Dataset: ember's DataLoader, whose generator orders the epochs
        dataset = torch.utils.data.StackDataset(torch.from_numpy(x), torch.from_numpy(y))
        history = model.fit(dataset, batch_size=BATCH, epochs=EPOCHS, verbose=0, callbacks=callbacks)
    elif data == "folder":  # image files decoded by 2 worker processes, reshuffled each epoch
        from ember.data import image_dataset_from_directory
        from testing.image_folders import make_image_folder

        folder = make_image_folder(out.parent / "images", per_class=SAMPLES // 2, max_side=64)
        images = image_dataset_from_directory(folder, image_size=(6, 6), batch_size=BATCH, seed=7, workers=2,
                                              verbose=False)
        history = model.fit(images, epochs=EPOCHS, verbose=0, callbacks=callbacks)
    elif data == "stream":  # WebDataset shards streamed, shuffled in blocks, decoded by 2 worker processes
        from ember.data import image_stream
        from testing.image_folders import make_shards

        shards = make_shards(out.parent / "shards", shards=4, per_shard=SAMPLES // 4, classes=2)
        stream = image_stream(shards, image_size=(6, 6), batch_size=BATCH, seed=7, shuffle_buffer=12, workers=2)
        history = model.fit(stream, epochs=EPOCHS, steps_per_epoch=SAMPLES // BATCH, verbose=0, callbacks=callbacks)
    else:
        history = model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, verbose=0, callbacks=callbacks)
    model.save_weights(out / "final.safetensors")
    atomic_write_text(out / "history.json", json.dumps(history.history))


def _command(out, backup_dir, data, kill, env=None) -> dict:
    """The training job's subprocess arguments; `env`: variables to add."""
    out.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")]),
           **(env or {})}
    return dict(args=[sys.executable, __file__, str(out), str(backup_dir), data, kill], env=env,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _job(out, backup_dir, data, kill, env=None):
    return subprocess.run(**_command(out, backup_dir, data, kill, env), timeout=300)


def _outputs(out):
    from safetensors.torch import load_file

    return load_file(out / "final.safetensors"), json.loads((out / "history.json").read_text()), \
        (out / "log.csv").read_text()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The outputs of a run that is never killed (and has no BackupAndRestore), per data kind."""
    runs = {}

    def get(data):
        if data not in runs:
            out = tmp_path_factory.mktemp(f"uninterrupted-{data}")
            job = _job(out, "-", data, "none")
            assert job.returncode == 0, job.stderr
            runs[data] = _outputs(out)
        return runs[data]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("seed,data", [(0, "arrays"), (1, "dataset"), (2, "arrays"), (3, "folder"), (4, "stream")])
def test_sigkilled_run_restarted_until_done_equals_uninterrupted(tmp_path, uninterrupted, seed, data):
    rng = random.Random(seed)
    # Each process trains at most 9 batches before its kill and backs up every 3, so of the 32
    # batches enough remain for every kill to happen.
    kills = [f"batch:{rng.randint(1, 9)}", f"rename:{rng.randint(1, 3)}"]
    rng.shuffle(kills)
    out, backup_dir = tmp_path / "run", tmp_path / "backups"
    for kill in kills:
        died = _job(out, backup_dir, data, kill)
        assert died.returncode == -signal.SIGKILL, (kill, died.stderr)
        if kill.startswith("rename"):  # killed after the temporary file was complete, before the rename
            assert list(backup_dir.glob(".backup-*.tmp")), sorted(os.listdir(backup_dir))
    finished = _job(out, backup_dir, data, "none")
    assert finished.returncode == 0, finished.stderr
    _assert_equal(_outputs(out), uninterrupted(data))
    assert not backup_dir.exists()  # delete_checkpoint: removed after the successful end


@pytest.mark.slow
@pytest.mark.parametrize("seed,signum,slurm", [
    pytest.param(5, signal.SIGTERM, False, id="SIGTERM"),
    pytest.param(6, signal.SIGUSR1, True, id="SIGUSR1-slurm"),
    pytest.param(3, signal.SIGTERM, True, id="SIGTERM-slurm-epoch-end")])  # seed 3: the 16th batch, an epoch's last
def test_preempted_run_backs_up_exits_and_resumes_equal_to_uninterrupted(tmp_path, uninterrupted, seed, signum,
                                                                         slurm):
    """Signalled after a random batch, the run backs up after that batch, exits with 128 + the
    signal's number and, in a Slurm job, requeues it on SIGUSR1 (not on SIGTERM, which scancel
    sends); started again, it ends as the uninterrupted run."""
    batch = random.Random(seed).randint(1, EPOCHS * SAMPLES // BATCH)
    out, backup_dir, slurm_bin = tmp_path / "run", tmp_path / "backups", tmp_path / "bin"
    env = slurm_with_fake_scontrol(slurm_bin) if slurm else {}
    with started(**_command(out, backup_dir, "arrays", f"pause:{batch}", env)) as job:
        signal_paused(out, ["job"], signum, job)
        _, stderr = job.communicate(timeout=300)
    assert job.returncode == 128 + signum, stderr
    # After the epoch's last batch the backup waits for the epoch's end: the position (epoch + 1, 0).
    epoch, step = divmod(batch, SAMPLES // BATCH)
    assert sorted(backup_dir.glob("backup-*.zip"))[-1].name == f"backup-{epoch:06d}-{step:09d}.zip", batch
    requeued = slurm and signum == signal.SIGUSR1
    assert scontrol_calls(slurm_bin) == ([f"requeue {JOB_ID} rank=none"] if requeued else [])
    assert ("requeued Slurm job" in stderr) == requeued, stderr

    finished = _job(out, backup_dir, "arrays", "none", env)
    assert finished.returncode == 0, finished.stderr
    _assert_equal(_outputs(out), uninterrupted("arrays"))
    assert not backup_dir.exists()


def _assert_equal(outputs, reference):
    import torch

    (weights, history, csv), (ref_weights, ref_history, ref_csv) = outputs, reference
    assert weights.keys() == ref_weights.keys()
    for name in weights:
        assert torch.equal(weights[name], ref_weights[name]), name
    assert history == ref_history
    assert csv == ref_csv


if __name__ == "__main__":
    train(Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4])
