"""`IndexedBatches`: the position logic of every dataset of numbered items (image or text files, table rows).

Batch `b` of epoch `e` is a pure function of (seed, e, b): the items are reshuffled each epoch from
`seed + e` (Keras reshuffles each iteration too), so resuming at a step reads only what is left, and
under DDP each process reads only its contiguous share of every global batch. Subclasses say how many
items there are (`num_samples`), how a list of item indices is read (`read`) and put together
(`assemble`).
"""
import math

import numpy as np
import torch


class IndexedBatches:
    """`len()` batches per epoch; iterating gives the next epoch's batches. `labels`: a tensor indexed like
    the items, or None."""

    num_samples: int  # items 0 .. num_samples - 1

    def __init__(self, labels, batch_size, shuffle, seed):
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size must be a positive integer or None (single samples); got {batch_size!r}")
        self.unbatched = batch_size is None  # Keras' batch_size=None: iterating yields single samples
        self.labels, self.batch_size, self.shuffle, self.seed = labels, batch_size or 1, shuffle, seed
        self.split = None  # (rank, processes): this process reads its share of every batch
        self._iterations = 0

    def __len__(self):
        return math.ceil(self.num_samples / self.batch_size)

    def __iter__(self):
        """One pass (the next epoch's order each time, as a Keras dataset reshuffles per iteration)."""
        epoch, self._iterations = self._iterations, self._iterations + 1
        for batch, _ in self.batches(epoch):
            yield _first(batch) if self.unbatched else batch

    def split_across(self, rank: int, processes: int) -> None:
        """From now on read only this process's contiguous share of every global batch."""
        self.split = (rank, processes)

    def order(self, epoch) -> np.ndarray:
        """Every item index, in `epoch`'s order; global batch `step` is its slice `step * batch_size`.. ."""
        return np.arange(self.num_samples) if not self.shuffle else torch.randperm(
            self.num_samples, generator=torch.Generator().manual_seed(self.seed + epoch)).numpy()

    def batches(self, epoch, start=0):
        """Yield `(batch, weight)` for steps `start`.. of `epoch`: batch is `(inputs, labels)` or inputs; weight
        is this process's share of the global batch (1 without a split)."""
        order, size = self.order(epoch), self.batch_size  # drawn once an epoch: a table has many small items
        shares = [self._share(order[step * size:(step + 1) * size]) for step in range(start, len(self))]
        for (indices, weight), (items, kept) in zip(shares, self.read(indices for indices, _ in shares)):
            if len(kept) == 0:
                continue
            inputs = self.assemble(items)
            yield (inputs if self.labels is None else (inputs, self.labels[torch.from_numpy(indices[kept])])), weight

    def read(self, index_lists):
        """(items, positions of the indices kept) per list of item indices, in order."""
        raise NotImplementedError

    def assemble(self, items):
        return items

    def _share(self, indices):
        if self.split is None:
            return indices, 1.0
        share = np.array_split(indices, self.split[1])[self.split[0]]
        return share, len(share) * self.split[1] / len(indices)


def _first(batch):
    """The one sample of a batch of one: a tensor's or list's first row, through tuples and dicts."""
    if isinstance(batch, tuple):
        return tuple(_first(part) for part in batch)
    if isinstance(batch, dict):
        return {name: _first(part) for name, part in batch.items()}
    return batch[0]
