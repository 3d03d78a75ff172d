import pytest
import torch

from ember.train.data import make_batches


def test_each_process_takes_its_share_of_the_global_batch_and_its_loss_weight():
    batches = make_batches(torch.arange(6).float(), torch.arange(6), batch_size=5)
    batches.split_across(rank=1, processes=2)
    first, last = list(batches.epoch(0))
    assert first.inputs.tolist() == [3, 4] and first.weight == pytest.approx(2 * 2 / 5)
    assert last.inputs.tolist() == [] and last.weight == 0  # an empty share weighs nothing


def test_a_loader_is_split_batch_by_batch_tuples_and_dicts_alike():
    loader = [(torch.arange(5), torch.arange(5) * 10), {"x": torch.arange(3), "labels": torch.arange(3)}]
    batches = make_batches(loader)
    batches.split_across(rank=1, processes=2)
    pair, mapping = list(batches.epoch(0))
    assert pair.inputs.tolist() == [3, 4] and pair.targets.tolist() == [30, 40]
    assert pair.weight == pytest.approx(2 * 2 / 5)
    assert mapping.inputs["x"].tolist() == [2] and mapping.weight == pytest.approx(2 / 3)


def test_training_batches_take_the_order_the_main_process_gives():
    batches = make_batches(torch.arange(8).float(), torch.arange(8), batch_size=4, shuffle=True, seed=1)
    batches.split_across(rank=0, processes=2, same_seed=lambda seed: 7)
    assert batches.seed == 7
