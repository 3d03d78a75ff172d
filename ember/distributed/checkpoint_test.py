import numpy as np
import pytest
import torch
from torch import nn

import ember
from ember.distributed import CheckpointMismatchError, load_checkpoint, save_checkpoint


def mlp(hidden=8):
    return ember.wrap(nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, 2)))


def test_a_checkpoint_round_trips_with_its_optimizer_state_and_replaces_the_previous_one(tmp_path):
    ember.seed(0)
    model = mlp()
    model.compile("adam", loss="cross_entropy", lr=0.01)
    x, y = np.random.default_rng(0).normal(size=(16, 4)).astype("float32"), np.arange(16) % 2
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    save_checkpoint(model, tmp_path / "ckpt", optimizer=model.optimizer)
    save_checkpoint(model, tmp_path / "ckpt", optimizer=model.optimizer)  # overwrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]

    restored = mlp()
    restored.compile("adam", loss="cross_entropy", lr=0.01)
    load_checkpoint(restored, tmp_path / "ckpt", optimizer=restored.optimizer)
    np.testing.assert_array_equal(restored.predict(x), model.predict(x))
    steps = [s["step"] for s in restored.optimizer.state_dict()["state"].values()]
    assert steps and all(float(s) == 2 for s in steps)


def test_a_checkpoint_of_another_model_is_refused_naming_what_differs(tmp_path):
    save_checkpoint(mlp(hidden=8), tmp_path / "ckpt")
    with pytest.raises(CheckpointMismatchError, match=r"module.0.weight: checkpoint \(8, 4\), "
                                                      r"model \(16, 4\)"):
        load_checkpoint(mlp(hidden=16), tmp_path / "ckpt")
    other = ember.wrap(nn.Sequential(nn.Linear(4, 2)))
    with pytest.raises(CheckpointMismatchError, match="not in this model: module.2.bias, module.2.weight"):
        load_checkpoint(other, tmp_path / "ckpt")
    with pytest.raises(CheckpointMismatchError, match="holds no optimizer state"):
        load_checkpoint(mlp(), tmp_path / "ckpt", optimizer=torch.optim.SGD(mlp().parameters(), lr=0.1))
    with pytest.raises(FileNotFoundError, match="not a checkpoint"):
        load_checkpoint(mlp(), tmp_path)
