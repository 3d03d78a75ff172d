"""`FileBatches`: the position logic every file dataset shares (images, texts).

Batch `b` of epoch `e` is a pure function of (seed, e, b): the files are reshuffled each epoch from
`seed + e` (Keras reshuffles each iteration too), so resuming at a step reads only what is left, and
under DDP each process reads only its contiguous share of every global batch. Subclasses say how a
list of files is read (`read`) and put together (`assemble`).
"""
import math

import numpy as np
import torch


class FileBatches:
    """`len()` batches per epoch, `class_names`, `file_paths`; iterating gives the next epoch's batches."""

    def __init__(self, paths, labels, class_names, batch_size, shuffle, seed):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
        self.file_paths, self.labels, self.class_names = list(paths), labels, class_names
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.split = None  # (rank, processes): this process reads its share of every batch
        self._iterations = 0

    @property
    def num_samples(self):
        return len(self.file_paths)

    def __len__(self):
        return math.ceil(len(self.file_paths) / self.batch_size)

    def __iter__(self):
        """One pass (the next epoch's order each time, as a Keras dataset reshuffles per iteration)."""
        epoch, self._iterations = self._iterations, self._iterations + 1
        for batch, _ in self.batches(epoch):
            yield batch

    def split_across(self, rank: int, processes: int) -> None:
        """From now on read only this process's contiguous share of every global batch."""
        self.split = (rank, processes)

    def batch_files(self, epoch, step) -> np.ndarray:
        """The file indices of global batch `step` of `epoch` (all processes')."""
        order = np.arange(len(self.file_paths)) if not self.shuffle else torch.randperm(
            len(self.file_paths), generator=torch.Generator().manual_seed(self.seed + epoch)).numpy()
        return order[step * self.batch_size:(step + 1) * self.batch_size]

    def batches(self, epoch, start=0):
        """Yield `(batch, weight)` for steps `start`.. of `epoch`: batch is `(inputs, labels)` or inputs; weight
        is this process's share of the global batch (1 without a split)."""
        shares = [self._share(self.batch_files(epoch, step)) for step in range(start, len(self))]
        for (files, weight), (items, kept) in zip(shares, self.read(files for files, _ in shares)):
            if len(kept) == 0:
                continue
            inputs = self.assemble(items)
            yield (inputs if self.labels is None else (inputs, self.labels[torch.from_numpy(files[kept])])), weight

    def read(self, file_lists):
        """(items, positions of the files kept) per list of file indices, in order."""
        raise NotImplementedError

    def assemble(self, items):
        return items

    def _share(self, files):
        if self.split is None:
            return files, 1.0
        share = np.array_split(files, self.split[1])[self.split[0]]
        return share, len(share) * self.split[1] / len(files)
