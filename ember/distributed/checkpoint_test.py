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


class Payload:
    """Unpickling this creates `marker`: code execution made visible."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_crafted_metadata_is_refused_without_running_it(tmp_path):
    import pickle

    from ember.distributed import CheckpointFileError

    marker, folder = tmp_path / "ran", tmp_path / "ckpt"
    folder.mkdir()
    (folder / ".metadata").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(CheckpointFileError, match=r"io.open, which is not part of a checkpoint"):
        load_checkpoint(mlp(), folder)
    assert not marker.exists()


def test_metadata_naming_a_file_outside_its_folder_is_refused(tmp_path):
    import pickle

    from ember.distributed import CheckpointFileError

    save_checkpoint(mlp(), tmp_path / "ckpt")
    metadata = pickle.loads((tmp_path / "ckpt" / ".metadata").read_bytes())  # our own file: safe to unpickle
    for info in metadata.storage_data.values():
        info.relative_path = "../../etc/passwd"
    (tmp_path / "ckpt" / ".metadata").write_bytes(pickle.dumps(metadata))
    with pytest.raises(CheckpointFileError, match="names data outside its folder"):
        load_checkpoint(mlp(), tmp_path / "ckpt")


def test_a_pickled_object_among_the_values_is_refused_without_running_it(tmp_path):
    """DCP stores non-tensor values (an optimizer's lr) as torch.save bytes; ember loads them weights_only."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    from ember.distributed import CheckpointFileError

    marker, model = tmp_path / "ran", mlp()
    model.compile("adam", loss="cross_entropy")
    optimizer = model.trainer.state.build_optimizer()
    state = {"model": get_model_state_dict(model), "optimizer": get_optimizer_state_dict(model, optimizer)}
    state["optimizer"]["param_groups"][0]["lr"] = Payload(marker)
    dcp.save(state, checkpoint_id=tmp_path / "ckpt")
    with pytest.raises(CheckpointFileError, match="damaged or do not match"):
        load_checkpoint(model, tmp_path / "ckpt", optimizer=optimizer)
    assert not marker.exists()
