"""Which rows go into which batch, epoch by epoch.

Length grouping (as Hugging Face's `group_by_length`, but with the batches shuffled
too): shuffle the rows, cut them into groups of 50 batches, sort each group by length
and cut it into batches, then shuffle the batches. Each batch holds texts of similar
length, so padding to the batch's longest text wastes little, while the order of the
batches stays random. The order of epoch e is a pure function of (seed, e).
"""
import math

import numpy as np

BATCHES_PER_GROUP = 50  # Hugging Face's LengthGroupedSampler uses the same mega-batch size


class LengthGroupedBatchSampler:
    """Yields arrays of row indices. `set_epoch(e)` (called by `fit`) picks the epoch's order."""

    def __init__(self, lengths, batch_size, *, shuffle, group_by_length, seed):
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if group_by_length and not shuffle:
            raise ValueError("group_by_length=True needs shuffle=True: without shuffling, batches keep the "
                             "given row order (so predict() outputs line up with the texts)")
        self.lengths = np.asarray(lengths)
        self.batch_size, self.shuffle, self.group_by_length = int(batch_size), shuffle, group_by_length
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def __len__(self):
        return math.ceil(len(self.lengths) / self.batch_size)

    def __iter__(self):
        n, size = len(self.lengths), self.batch_size
        if not self.shuffle:
            return (np.arange(begin, min(begin + size, n)) for begin in range(0, n, size))
        rng = np.random.default_rng([self.seed, self.epoch])
        rows = rng.permutation(n)
        if not self.group_by_length:
            return (rows[begin:begin + size] for begin in range(0, n, size))
        batches = []
        group = size * BATCHES_PER_GROUP  # a multiple of the batch size: only the last batch is short
        for begin in range(0, n, group):
            members = rows[begin:begin + group]
            members = members[np.argsort(-self.lengths[members], kind="stable")]
            batches.extend(members[i:i + size] for i in range(0, len(members), size))
        return (batches[i] for i in rng.permutation(len(batches)))
