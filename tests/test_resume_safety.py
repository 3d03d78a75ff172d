"""A crafted checkpoint carrying a pickle code payload is refused everywhere ember loads files,
and nothing in it runs (the file its payload would create never appears)."""
import io
import pickle
import warnings

import numpy as np
import pytest
import torch

import ember
from ember import layers
from ember.saving import ModelFileError


class Payload:
    """Unpickling this calls open(marker, "w"): code execution, visible as a new file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _malicious_files(marker):
    buffer = io.BytesIO()
    torch.save({"model": Payload(marker)}, buffer)  # a zip holding data.pkl, as torch checkpoints are
    return {"raw pickle": pickle.dumps({"model": Payload(marker)}),
            "protocol-0 pickle": pickle.dumps({"model": Payload(marker)}, protocol=0),
            "torch.save archive": buffer.getvalue()}


def test_the_payload_is_live(tmp_path):
    """Proves the test below could fail: unpickling the payload does create the marker."""
    marker = tmp_path / "ran"
    for name, data in _malicious_files(marker).items():
        if name != "torch.save archive":
            pickle.loads(data)
            assert marker.exists(), name
            marker.unlink()


def _model():
    ember.seed(0)
    model = ember.Sequential([layers.Dense(4), layers.Dense(2)])
    model.compile("adamw", "cross_entropy")
    return model


@pytest.mark.parametrize("kind", ["raw pickle", "protocol-0 pickle", "torch.save archive"])
def test_malicious_backup_is_refused_and_runs_nothing(tmp_path, kind):
    marker = tmp_path / "ran"
    backup_dir = tmp_path / "backup"
    backup_dir.mkdir()
    newest = backup_dir / "backup-000009-000000000.zip"
    newest.write_bytes(_malicious_files(marker)[kind])
    x, y = np.random.rand(16, 3).astype("float32"), np.zeros(16, dtype="int64")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = _model().fit(x, y, epochs=2, verbose=0, resume=backup_dir)
    assert not marker.exists()
    assert any("pickle" in str(w.message) or "not an ember backup" in str(w.message) or "corrupt" in str(w.message)
               for w in caught), [str(w.message) for w in caught]
    assert len(history.history["loss"]) == 2  # trained from the start instead
    assert (backup_dir / (newest.name + ".corrupt")).exists()  # kept for inspection, never loaded


@pytest.mark.parametrize("kind", ["raw pickle", "protocol-0 pickle", "torch.save archive"])
def test_malicious_model_file_is_refused_and_runs_nothing(tmp_path, kind):
    marker = tmp_path / "ran"
    path = tmp_path / "model.ember"
    path.write_bytes(_malicious_files(marker)[kind])
    with pytest.raises(ModelFileError):
        ember.load(path)
    with pytest.raises(ModelFileError):
        _model().load_weights(path)
    assert not marker.exists()


# ---------------------------------------------------------------- crafted backups that are valid zips
def _data():
    rng = np.random.default_rng(0)
    return rng.random((16, 3)).astype("float32"), np.zeros(16, dtype="int64")


def _two_backups(backup_dir):
    """A finished run's backups after epochs 1 and 2 (kept: delete_checkpoint=False, keep=2)."""
    from ember.callbacks import BackupAndRestore

    _model().fit(*_data(), epochs=2, verbose=0, callbacks=[BackupAndRestore(backup_dir, delete_checkpoint=False)])
    return sorted(backup_dir.glob("backup-*.zip"))


def _uninterrupted(epochs=3):
    return _model().fit(*_data(), epochs=epochs, verbose=0).history["loss"]


def _resume(backup_dir, epochs=3):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = _model().fit(*_data(), epochs=epochs, verbose=0, resume=backup_dir)
    return history, [str(w.message) for w in caught]


def test_a_backup_naming_shards_elsewhere_is_set_aside_and_nothing_runs(tmp_path):
    from ember.train.checkpoint import read_backup, write_backup

    marker = tmp_path / "ran"
    older, newest = _two_backups(tmp_path / "backup")
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / ".metadata").write_bytes(pickle.dumps(Payload(marker)))  # what DCP's reader would unpickle
    state = read_backup(newest)
    state.update(shards="../evil", model=None, optimizer=None)
    write_backup(newest, state)
    (tmp_path / "backup" / newest.with_suffix(".shards").name).symlink_to(evil)  # its own name: still refused
    history, messages = _resume(tmp_path / "backup")
    assert not marker.exists()
    assert any("names shards '../evil'" in m for m in messages), messages
    assert (tmp_path / "backup" / (newest.name + ".corrupt")).exists()
    assert history.history["loss"] == _uninterrupted()  # resumed from the older backup, after epoch 1

    state["shards"] = newest.with_suffix(".shards").name  # the sibling name, but its metadata is a payload
    write_backup(newest, state)
    history, messages = _resume(tmp_path / "backup")
    assert not marker.exists()
    assert any("is not part of a checkpoint" in m for m in messages), messages


@pytest.mark.parametrize("damage", ["no position", "position is text", "rng of another size", "ndarray of objects"])
def test_a_crc_valid_backup_with_damaged_content_falls_back_to_the_previous_one(tmp_path, damage):
    from ember.train.checkpoint import pack, read_backup, write_backup

    older, newest = _two_backups(tmp_path / "backup")
    state = read_backup(newest)
    if damage == "no position":
        del state["position"]
    elif damage == "position is text":
        state["position"]["epoch"] = "2"
    elif damage == "rng of another size":
        state["ranks"][0]["rng"]["torch"] = torch.zeros(7, dtype=torch.uint8)
    write_backup(newest, state)
    if damage == "ndarray of objects":  # a numpy dtype that could hold anything
        import json
        import zipfile

        with zipfile.ZipFile(newest) as archive:
            meta, tensors = json.loads(archive.read("backup.json")), archive.read("tensors.safetensors")
        meta["state"]["ranks"][0]["rng"]["numpy"]["__tuple__"][1]["dtype"] = "object"
        with zipfile.ZipFile(newest, "w") as archive:
            archive.writestr("backup.json", json.dumps(meta))
            archive.writestr("tensors.safetensors", tensors)
    assert pack  # the same packing the trainer uses wrote the file
    history, messages = _resume(tmp_path / "backup")
    assert (tmp_path / "backup" / (newest.name + ".corrupt")).exists(), messages
    assert history.history["loss"] == _uninterrupted()  # epochs 2 and 3 from the backup after epoch 1


class PoisonAt(ember.callbacks.Callback):
    """Makes the weights NaN after the n-th batch, as a diverging run does."""

    def __init__(self, n):
        self.n, self.seen = n, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.n:
            with torch.no_grad():
                for p in self.model.parameters():
                    p.fill_(float("nan"))


@pytest.mark.parametrize("save_freq", ["epoch", 1])
def test_a_nan_stop_keeps_the_finite_backups(tmp_path, save_freq):
    from ember.callbacks import BackupAndRestore
    from ember.train.checkpoint import read_backup

    backup_dir = tmp_path / "backup"
    x, y = _data()  # 16 samples, batch 4: 4 batches an epoch; NaN after batch 2 of epoch 3
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _model().fit(x, y, batch_size=4, epochs=5, verbose=0,
                     callbacks=[PoisonAt(10), BackupAndRestore(backup_dir, save_freq=save_freq, keep=2)])
    messages = [str(w.message) for w in caught]
    kept = sorted(backup_dir.glob("backup-*.zip"))
    assert len(kept) == 2, messages
    for path in kept:
        state = read_backup(path)
        assert all(torch.isfinite(t).all() for t in state["model"].values()), path.name
    assert any("non-finite loss" in m and str(backup_dir) in m and kept[-1].name in m for m in messages), messages
    # and the run can be continued from the newest finite one
    history, _ = _resume(backup_dir, epochs=5)
    assert all(np.isfinite(history.history["loss"]))
