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
from ember.deploy.saving import ModelFileError


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
