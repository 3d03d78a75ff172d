import math
import pickle
import random

import numpy as np
import pytest
import torch

from ember.train.checkpoint import BackupFileError, pack, read_backup, rng_state, set_rng_state, unpack, \
    write_backup


def test_nested_state_round_trips_with_its_types(tmp_path):
    shared = torch.arange(6.0)
    state = {"optimizer": {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.randn(2, 3)}},
                           "param_groups": [{"lr": 0.1 / 3, "betas": (0.9, 0.999), "params": [0]}]},
             "tied": [shared, shared], "half": torch.randn(4, dtype=torch.bfloat16), "none": None,
             "floats": [math.inf, -math.inf], "numpy": np.arange(5, dtype=np.uint32), "flag": True,
             "tag_like": {"__tensor__": "not a tensor"}}
    write_backup(tmp_path / "b.zip", state)
    back = read_backup(tmp_path / "b.zip")
    assert list(back["optimizer"]["state"]) == [0]  # int keys stay ints
    assert back["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert back["optimizer"]["param_groups"][0]["lr"] == 0.1 / 3
    assert torch.equal(back["optimizer"]["state"][0]["exp_avg"], state["optimizer"]["state"][0]["exp_avg"])
    assert torch.equal(back["tied"][1], shared) and back["half"].dtype == torch.bfloat16
    assert back["floats"] == [math.inf, -math.inf] and back["none"] is None and back["flag"] is True
    assert back["numpy"].dtype == np.uint32 and back["numpy"].tolist() == [0, 1, 2, 3, 4]
    assert back["tag_like"] == {"__tensor__": "not a tensor"}


def test_memory_format_survives(tmp_path):
    weight = torch.randn(4, 3, 5, 5).contiguous(memory_format=torch.channels_last)
    transposed = torch.randn(3, 7).t()
    write_backup(tmp_path / "b.zip", {"w": weight, "t": transposed})
    back = read_backup(tmp_path / "b.zip")
    assert back["w"].stride() == weight.stride() and torch.equal(back["w"], weight)
    assert back["t"].stride() == transposed.stride() and torch.equal(back["t"], transposed)


def test_objects_that_would_need_pickle_are_refused_with_their_path():
    with pytest.raises(TypeError, match=r"state/callbacks/0.*set"):
        pack({"callbacks": [{1, 2}]})


def test_optimizer_resumes_exactly_from_a_backup(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    for _ in range(2):
        model(torch.randn(4, 3)).sum().backward()
        optimizer.step()
    write_backup(tmp_path / "b.zip", {"optimizer": optimizer.state_dict()})
    restored = torch.optim.AdamW(model.parameters(), lr=0.5)
    restored.load_state_dict(read_backup(tmp_path / "b.zip")["optimizer"])
    a, b = optimizer.state_dict(), restored.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for key in a["state"]:
        for name, value in a["state"][key].items():
            assert torch.equal(value, b["state"][key][name]), name


def test_rng_states_round_trip(tmp_path):
    write_backup(tmp_path / "rng.zip", {"rng": rng_state()})
    expected = (random.random(), np.random.rand(), torch.rand(3))
    set_rng_state(read_backup(tmp_path / "rng.zip")["rng"])
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert expected[:2] == again[:2] and torch.equal(expected[2], again[2])


def test_damaged_and_foreign_files_are_refused(tmp_path):
    good = tmp_path / "good.zip"
    write_backup(good, {"w": torch.randn(100)})
    cases = {"truncated": (good.read_bytes()[:-40], "corrupt or truncated"),
             "pickle": (pickle.dumps({"w": 1}), "pickle"),
             "empty": (b"", "corrupt or truncated")}
    for name, (data, message) in cases.items():
        path = tmp_path / f"{name}.zip"
        path.write_bytes(data)
        with pytest.raises(BackupFileError, match=message):
            read_backup(path)


def test_backup_files_get_the_usual_permissions(tmp_path):
    import os

    umask = os.umask(0o022)
    try:
        write_backup(tmp_path / "b.zip", {"x": torch.zeros(2)})
    finally:
        os.umask(umask)
    assert (tmp_path / "b.zip").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600


def test_a_backup_written_before_the_container_module_reads_and_checks():
    """tests/data/formats/backup-v1.zip: written by ember before #16 (a Sequential after one epoch)."""
    from pathlib import Path

    from ember.train.checkpoint import check_backup_state

    fixture = Path(__file__).parents[2] / "tests" / "data" / "formats" / "backup-v1.zip"
    state = read_backup(fixture)
    check_backup_state(state, Path("backup-000001-000000000.zip"))
    assert state["position"] == {"epoch": 1, "step": 0, "global_step": 4, "finished": False}
    assert sorted(state["model"]) == ["layers.0.bias", "layers.0.weight", "layers.2.bias", "layers.2.weight"]
