import numpy as np
import pytest

from ember.hf.batching import BATCHES_PER_GROUP, LengthGroupedBatchSampler


def _epoch(sampler, epoch):
    sampler.set_epoch(epoch)
    return [rows.tolist() for rows in sampler]


def test_each_row_once_per_epoch_in_batches_of_similar_length():
    lengths = np.random.default_rng(0).integers(3, 60, size=1000)
    sampler = LengthGroupedBatchSampler(lengths, 8, shuffle=True, group_by_length=True, seed=7)
    batches = _epoch(sampler, 0)
    assert len(batches) == len(sampler) == 125
    assert sorted(sum(batches, [])) == list(range(1000))
    grouped = sum(len(b) * lengths[b].max() for b in batches)
    plain = LengthGroupedBatchSampler(lengths, 8, shuffle=True, group_by_length=False, seed=7)
    random_batches = sum(len(b) * lengths[b].max() for b in _epoch(plain, 0))
    assert grouped < 0.7 * random_batches


def test_order_is_a_function_of_seed_and_epoch():
    lengths = np.arange(400) % 37
    a = LengthGroupedBatchSampler(lengths, 4, shuffle=True, group_by_length=True, seed=3)
    b = LengthGroupedBatchSampler(lengths, 4, shuffle=True, group_by_length=True, seed=3)
    assert _epoch(a, 1) == _epoch(b, 1)
    assert _epoch(a, 0) != _epoch(a, 1)
    # within a group the batches are cut longest first; the batch order is shuffled afterwards
    longest = [max(lengths[batch]) for batch in _epoch(a, 0)][:BATCHES_PER_GROUP]
    assert longest != sorted(longest, reverse=True)


def test_unshuffled_batches_keep_the_given_order():
    sampler = LengthGroupedBatchSampler([5, 1, 9, 2, 7], 2, shuffle=False, group_by_length=False, seed=0)
    assert _epoch(sampler, 3) == [[0, 1], [2, 3], [4]]
    with pytest.raises(ValueError, match="group_by_length=True needs shuffle=True"):
        LengthGroupedBatchSampler([1, 2], 2, shuffle=False, group_by_length=True, seed=0)
