"""Turning what the user passes to fit/evaluate/predict into batches of `(inputs, targets)`.

In-memory data (numpy arrays, tensors, dicts of them, a TensorDataset) takes the fast
path: converted once, then sliced with one permutation per epoch — no per-sample
`__getitem__` and collate. Anything else (a Dataset, a DataLoader, any iterable of
`(x, y)` tuples or dict batches) is iterated as given.

Every batch is a `Batch(inputs, targets, weight)`: `inputs` is a tensor or a dict of tensors
(Hugging Face batches, whose "labels" stay in the dict so the model can compute its own loss);
`targets` is a tensor or None; `weight` scales the batch's loss: 1 in one process, and under
DDP/FSDP this process's share of the global batch (`share * processes / global`), so the
averaged gradient is the global batch's mean even when a batch does not split evenly.
"""
import math
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset
from torch.utils.data.distributed import DistributedSampler


class Batch(NamedTuple):
    inputs: object
    targets: object
    weight: float = 1.0


class Share(NamedTuple):
    """One process's share of a global batch (what `RankShares` yields) and its weight."""
    batch: object
    weight: float


class ArrayBatches:
    """Batches sliced from in-memory tensors. The order of epoch e is a pure function of
    (`seed`, e), so a resumed run sees exactly the batches the interrupted one would have."""

    def __init__(self, inputs, targets, batch_size, shuffle, seed):
        self.inputs, self.targets = inputs, targets
        self.batch_size, self.shuffle, self.seed = int(batch_size), shuffle, int(seed)
        self.num_samples = _length(inputs)
        self.split = None  # (rank, processes) once split_across()

    def __len__(self):
        return math.ceil(self.num_samples / self.batch_size)

    def order(self, epoch):
        if not self.shuffle:
            return None
        generator = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.num_samples, generator=generator)

    def epoch(self, epoch, start_step=0):
        order = self.order(epoch)
        for step in range(start_step, len(self)):
            begin, end = step * self.batch_size, min((step + 1) * self.batch_size, self.num_samples)
            index, weight = slice(begin, end) if order is None else order[begin:end], 1.0
            if self.split is not None:
                index, weight = _share(torch.arange(begin, end) if order is None else index, *self.split)
            yield Batch(_take(self.inputs, index), None if self.targets is None else self.targets[index], weight)


    def split_across(self, rank: int, processes: int, same_seed=None) -> None:
        """From now on yield this process's contiguous share of every global batch, with its weight.
        `same_seed` (training): int -> the main process's int, so every process walks the same order."""
        if same_seed is not None:
            self.seed = same_seed(self.seed)
        self.split = (rank, processes)


class IterableBatches:
    """Batches from a DataLoader or any re-iterable of batches."""

    def __init__(self, iterable, what="x"):
        self.iterable, self.what = iterable, what
        self.num_samples = None
        try:
            self.num_batches = len(iterable)
        except TypeError:
            self.num_batches = None  # an iterable without a length: len() of these batches raises TypeError

    def __len__(self):
        return self.num_batches

    @property
    def seed(self):
        """The shuffle seed of the iterable's sampler, if it has one: BackupAndRestore saves and restores it."""
        return getattr(getattr(self.iterable, "sampler", None), "seed", None)

    @seed.setter
    def seed(self, value):
        self.iterable.sampler.seed = value

    def split_across(self, rank: int, processes: int, same_seed=None) -> None:
        """As `ArrayBatches.split_across`; a loader with a DistributedSampler already yields this process's."""
        if isinstance(getattr(self.iterable, "sampler", None), DistributedSampler):
            return
        generator = getattr(self.iterable, "generator", None)
        if same_seed is not None and generator is not None:
            generator.manual_seed(same_seed(generator.initial_seed()))
        self.iterable = RankShares(self.iterable, rank, processes)

    def epoch(self, epoch, start_step=0):
        sampler = getattr(self.iterable, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        step = -1
        for step, batch in enumerate(self.iterable):
            if step >= start_step:
                yield Batch(*split_batch(batch.batch), batch.weight) if isinstance(batch, Share) \
                    else Batch(*split_batch(batch))
        if step < 0:  # an empty epoch would log a loss of 0.0 and train nothing
            raise ValueError(f"{self.what} ({type(self.iterable).__name__}) yielded no batch in epoch {epoch + 1}: "
                             "expected at least one (x, y) batch per epoch; is the data empty or exhausted?")


class RankShares:
    """Re-iterable over a loader's global batches that yields one process's share of each."""

    def __init__(self, loader, rank: int, processes: int):
        self.loader, self.rank, self.processes = loader, rank, processes
        self.sampler = getattr(loader, "sampler", None)  # IterableBatches calls sampler.set_epoch

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            yield _share(batch, self.rank, self.processes)


def _share(batch, rank: int, processes: int) -> Share:
    """This process's contiguous share of a global batch (tensors, arrays, dicts and tuples of them),
    weighted `share * processes / global` so the averaged gradient is the global batch's mean."""
    share = _split(batch, rank, processes)
    return Share(share, _num_samples(share) * processes / max(_num_samples(batch), 1))


def _split(batch, rank, processes):
    if isinstance(batch, Mapping):
        return {k: _split(v, rank, processes) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(_split(v, rank, processes) for v in batch)
    if isinstance(batch, torch.Tensor) and batch.dim():
        return torch.tensor_split(batch, processes)[rank]
    if isinstance(batch, np.ndarray) and batch.ndim:
        return np.array_split(batch, processes)[rank]
    return batch


def _num_samples(batch) -> int:
    if isinstance(batch, Mapping):
        return _num_samples(next(iter(batch.values()), None))
    if isinstance(batch, (tuple, list)):
        return _num_samples(batch[0]) if batch else 0
    return len(batch) if isinstance(batch, (torch.Tensor, np.ndarray)) and batch.ndim else 0


def make_batches(x, y=None, *, batch_size=32, shuffle=False, seed=0, device=None, what="x"):
    """Batches for any supported data form."""
    if x is None:
        raise ValueError(f"{what} is None: pass arrays, tensors, a Dataset, a DataLoader or an iterable of batches")
    if isinstance(x, TensorDataset) and y is None:
        x, y = (x.tensors[0], x.tensors[1]) if len(x.tensors) > 1 else (x.tensors[0], None)
    if _is_array_like(x):
        inputs = to_tensor(x, device)
        targets = None if y is None else to_tensor(y, device)
        n = _length(inputs)
        if n == 0:
            raise ValueError(f"{what} has 0 samples: nothing to train or evaluate on")
        if targets is not None and _length(targets) != n:
            raise ValueError(f"{what} has {n} samples but y has {_length(targets)}: they must match")
        return ArrayBatches(inputs, targets, batch_size, shuffle, seed)
    if y is not None:
        raise ValueError(f"y must be None when {what} is a {type(x).__name__} (it yields the targets itself)")
    if isinstance(x, Dataset) and not isinstance(x, IterableDataset):
        if len(x) == 0:
            raise ValueError(f"{what} is an empty Dataset")
        generator = torch.Generator().manual_seed(seed)
        return IterableBatches(DataLoader(x, batch_size=batch_size, shuffle=shuffle, generator=generator), what)
    if isinstance(x, (DataLoader, IterableDataset)) or hasattr(x, "__iter__"):
        if iter(x) is x:
            raise TypeError(f"{what} is a one-shot iterator (e.g. a generator): pass something that can be "
                            "iterated once per epoch, such as a list, a Dataset or a DataLoader")
        batches = IterableBatches(x if not isinstance(x, IterableDataset) else DataLoader(x, batch_size=batch_size),
                                  what)
        if batches.num_batches == 0:
            raise ValueError(f"{what} is an empty {type(x).__name__}: expected at least one batch")
        return batches
    raise TypeError(f"unsupported data type {type(x).__name__} for {what}: expected numpy arrays, tensors, a dict "
                    "of arrays, a Dataset, a DataLoader or an iterable of (x, y) batches")


def split_batch(batch):
    """(inputs, targets) from a tuple/list, a dict batch, or a lone tensor."""
    if isinstance(batch, Mapping):
        return dict(batch), batch.get("labels")
    if isinstance(batch, (tuple, list)):
        if len(batch) == 1:
            return batch[0], None
        if len(batch) == 2:
            return batch[0], batch[1]
        raise ValueError(f"a batch tuple must be (x,) or (x, y), got {len(batch)} elements")
    return batch, None


def to_tensor(value, device=None):
    """numpy/tensor/dict -> tensor(s) on `device`; float64 becomes float32 (as Keras does)."""
    if isinstance(value, Mapping):
        return {k: to_tensor(v, device) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise TypeError("got a numpy array of Python objects; expected numbers (did rows have different lengths?)")
        tensor = torch.from_numpy(np.ascontiguousarray(value))
    elif isinstance(value, torch.Tensor):
        tensor = value
    else:
        tensor = torch.as_tensor(np.asarray(value))
    if tensor.dtype == torch.float64:
        tensor = tensor.float()
    return tensor.to(device) if device is not None else tensor


def move(batch_part, device, non_blocking=False):
    if batch_part is None:
        return None
    if isinstance(batch_part, Mapping):
        return {k: move(v, device, non_blocking) for k, v in batch_part.items()}
    if isinstance(batch_part, torch.Tensor):
        if batch_part.dtype == torch.float64:
            batch_part = batch_part.float()
        return batch_part.to(device, non_blocking=non_blocking)
    if isinstance(batch_part, np.ndarray):
        return to_tensor(batch_part, device)
    return batch_part


def split_validation(x, y, validation_split):
    """Keras' validation_split: the last fraction of the samples, taken before shuffling."""
    if not 0.0 <= validation_split < 1.0:
        raise ValueError(f"validation_split must be in [0, 1), got {validation_split}")
    if not _is_array_like(x):
        raise ValueError("validation_split needs in-memory arrays or tensors; pass validation_data for other data")
    n = _length(x)
    cut = n - int(round(n * validation_split))
    if cut <= 0 or cut >= n:
        raise ValueError(f"validation_split={validation_split} leaves no training or no validation "
                         f"samples out of {n}")
    return (_take(x, slice(0, cut)), None if y is None else y[:cut]), (_take(x, slice(cut, n)),
                                                                        None if y is None else y[cut:])


def _is_array_like(x):
    if isinstance(x, (np.ndarray, torch.Tensor)):
        return True
    return isinstance(x, Mapping) and x and all(isinstance(v, (np.ndarray, torch.Tensor)) for v in x.values())


def _length(x):
    if isinstance(x, Mapping):
        return len(next(iter(x.values())))
    return len(x)


def _take(x, index):
    if isinstance(x, Mapping):
        return {k: v[index] for k, v in x.items()}
    return x[index]
