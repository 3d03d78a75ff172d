"""Turning what the user passes to fit/evaluate/predict into batches of `(inputs, targets)`.

In-memory data (numpy arrays, tensors, lists and dicts of them, a TensorDataset) takes the fast
path: converted once, then sliced with one permutation per epoch — no per-sample
`__getitem__` and collate. Anything else (a Dataset, a DataLoader, any iterable of
`(x, y)` or `(x, y, sample_weight)` tuples or dict batches) is iterated as given; ember.data's
datasets know their position (`SourceBatches`). uint8 inputs reach the model as float32 (`move_inputs`).

Every batch is a `Batch(inputs, targets, weight, sample_weight)`: `inputs` is a tensor, a list of
tensors (a model's several inputs) or a dict of them (named inputs; Hugging Face batches, whose
"labels" stay in the dict so the model can compute its own loss); `targets` is a tensor, a list or
dict of them (several outputs) or None; `weight` scales the batch's loss: 1 in one process, and under
DDP/FSDP this process's share of the global batch (`share * processes / global`), so the
averaged gradient is the global batch's mean even when a batch does not split evenly;
`sample_weight` (None, a tensor, or a list / dict by output) weighs each sample's loss, Keras' way
(ember/train/losses.py), and is split with the batch.

How the model receives them (`call_model`): a tensor or a list as one argument; a dict as keyword
arguments when the model's forward accepts those names (Hugging Face: `input_ids=`,
`attention_mask=`, `labels=`), else as one argument, as a Keras functional model takes its named
inputs; a model that sets `takes_structured_input = True` always gets the dict as one argument.
"""
import functools
import inspect
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
    sample_weight: object = None


class Share(NamedTuple):
    """One process's share of a global batch (what `RankShares` yields) and its weight."""
    batch: object
    weight: float


class ArrayBatches:
    """Batches sliced from in-memory tensors. The order of epoch e is a pure function of
    (`seed`, e), so a resumed run sees exactly the batches the interrupted one would have."""

    def __init__(self, inputs, targets, batch_size, shuffle, seed, sample_weight=None):
        self.inputs, self.targets, self.sample_weight = inputs, targets, sample_weight
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
            yield Batch(_take(self.inputs, index), _take(self.targets, index), weight, _take(self.sample_weight, index))

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
                share = isinstance(batch, Share)
                inputs, targets, sample_weight = split_batch(batch.batch if share else batch)
                yield Batch(inputs, targets, batch.weight if share else 1.0, sample_weight)
        if step < 0:  # an empty epoch would log a loss of 0.0 and train nothing
            raise ValueError(f"{self.what} ({type(self.iterable).__name__}) yielded no batch in epoch {epoch + 1}: "
                             "expected at least one (x, y) batch per epoch; is the data empty or exhausted?")


class SourceBatches:
    """Batches from a source that knows its position (ember.data's datasets): `len()` batches per epoch and
    `batches(epoch, start)` yielding `(batch, weight)`, a pure function of (seed, epoch, step), so a resumed
    run reads only what is left; under DDP the source reads only this process's share of each batch."""

    def __init__(self, source):
        self.source = source
        self.num_samples = getattr(source, "num_samples", None)

    def __len__(self):
        return len(self.source)  # a stream has none: TypeError, as for any iterable without a length

    @property
    def seed(self):
        return self.source.seed

    @seed.setter
    def seed(self, value):
        self.source.seed = value

    def split_across(self, rank: int, processes: int, same_seed=None) -> None:
        if same_seed is not None:
            self.source.seed = same_seed(self.source.seed)
        self.source.split_across(rank, processes)

    def epoch(self, epoch, start_step=0):
        for batch, weight in self.source.batches(epoch, start_step):
            inputs, targets, sample_weight = split_batch(batch)
            yield Batch(inputs, targets, weight, sample_weight)


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


def make_batches(x, y=None, *, sample_weight=None, class_weight=None, batch_size=32, shuffle=False, seed=0,
                 device=None, what="x"):
    """Batches for any supported data form. `sample_weight`: one weight per sample (or a list / dict of
    them by output); `class_weight`: {class: weight}, turned into sample weights from y (Keras)."""
    if x is None:
        raise ValueError(f"{what} is None: pass arrays, tensors, a Dataset, a DataLoader or an iterable of batches")
    if isinstance(x, TensorDataset) and y is None:
        x, y, third = (*x.tensors, None, None)[:3]  # (x,), (x, y) or (x, y, sample_weight)
        sample_weight = third if sample_weight is None else sample_weight
    if _is_array_like(x):
        inputs = to_tensor(x, device)
        targets = None if y is None else to_tensor(y, device)
        weights = _sample_weights(sample_weight, class_weight, targets, device)
        n = _length(inputs)
        if n == 0:
            raise ValueError(f"{what} has 0 samples: nothing to train or evaluate on")
        for label, value in [*_leaves(inputs, what), *_leaves(targets, "y"), *_leaves(weights, "sample_weight")]:
            if len(value) != n:
                raise ValueError(f"{what} has {n} samples but {label} has {len(value)}: they must match")
        return ArrayBatches(inputs, targets, batch_size, shuffle, seed, weights)
    for name, value in (("y", y), ("sample_weight", sample_weight), ("class_weight", class_weight)):
        if value is not None:
            raise ValueError(f"{name} must be None when {what} is a {type(x).__name__}: it yields its batches "
                             "itself, as (x, y) or (x, y, sample_weight) tuples")
    if callable(getattr(x, "batches", None)) and callable(getattr(x, "split_across", None)):
        return SourceBatches(x)
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
    """(inputs, targets, sample_weight) from a tuple/list, a dict batch, or a lone tensor."""
    if isinstance(batch, Mapping):
        return dict(batch), batch.get("labels"), None
    if isinstance(batch, (tuple, list)):
        if len(batch) in (1, 2, 3):
            return (*batch, None, None)[:3]
        raise ValueError(f"a batch tuple must be (x,), (x, y) or (x, y, sample_weight), got {len(batch)} elements")
    return batch, None, None


def _sample_weights(sample_weight, class_weight, targets, device):
    """The sample weights of in-memory data: given, or from class_weight and the labels (Keras)."""
    if sample_weight is not None and class_weight is not None:
        raise ValueError("pass sample_weight or class_weight, not both (as in Keras)")
    if (sample_weight is not None or class_weight is not None) and targets is None:
        raise ValueError("sample_weight and class_weight weigh the loss of each sample against its targets: pass y")
    if class_weight is None:
        return None if sample_weight is None else to_tensor(sample_weight, device)
    if not isinstance(targets, torch.Tensor):
        raise ValueError(f"class_weight is for a model with one output, but y is a {type(targets).__name__} of "
                         f"{len(targets)} targets: pass sample_weight per output instead")
    if not isinstance(class_weight, Mapping):
        raise TypeError(f"class_weight must be a dict {{class index: weight}}, got {type(class_weight).__name__}")
    labels = targets.argmax(-1) if targets.dim() > 1 and targets.shape[-1] != 1 else targets.reshape(len(targets))
    labels = labels.round().long()  # Keras rounds binary probabilities to their class
    weights = torch.ones(len(targets), device=targets.device)
    for label, weight in class_weight.items():
        weights[labels == int(label)] = float(weight)
    return weights


def call_model(model, inputs, forward=None):
    """`forward(inputs)` (default: the model itself), a dict as keyword arguments or one argument (see above)."""
    forward = model if forward is None else forward
    if isinstance(inputs, Mapping) and not getattr(model, "takes_structured_input", False) \
            and _takes_keywords(type(_innermost(model)), tuple(inputs)):
        return forward(**inputs)
    return forward(inputs)


def _innermost(model):
    """The module whose forward decides: through wrappers whose forward passes everything on (ember.wrap)."""
    while _passes_through(type(model)) and isinstance(getattr(model, "module", None), torch.nn.Module):
        model = model.module
    return model


@functools.cache
def _passes_through(model_type) -> bool:
    """Whether forward is `forward(self, *args, **kwargs)`."""
    kinds = [p.kind for p in inspect.signature(model_type.forward).parameters.values()][1:]
    return kinds == [inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD]


@functools.cache
def _takes_keywords(model_type, names) -> bool:
    """Whether forward accepts every name as a keyword (or any keyword)."""
    parameters = inspect.signature(model_type.forward).parameters
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()) or all(
        name in parameters and parameters[name].kind is not inspect.Parameter.POSITIONAL_ONLY for name in names)


def to_tensor(value, device=None):
    """numpy/tensor/dict/list -> tensor(s) on `device`; float64 becomes float32 (as Keras does)."""
    if isinstance(value, Mapping):
        return {k: to_tensor(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and _is_array_like(value):
        return [to_tensor(v, device) for v in value]
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
    if isinstance(batch_part, (list, tuple)):
        return [move(v, device, non_blocking) for v in batch_part]
    if isinstance(batch_part, torch.Tensor):
        if batch_part.dtype == torch.float64:
            batch_part = batch_part.float()
        return batch_part.to(device, non_blocking=non_blocking)
    if isinstance(batch_part, np.ndarray):
        return to_tensor(batch_part, device)
    return batch_part


def move_inputs(inputs, device, non_blocking=False):
    """`move`, then uint8 tensors (images, as ember.data yields them) to float32 on the device: 4x less to
    copy, and 0-255 floats as Keras casts uint8 images to its float32 inputs."""
    moved = move(inputs, device, non_blocking)
    if isinstance(moved, Mapping):
        return {k: _uint8_as_float(v) for k, v in moved.items()}
    return [_uint8_as_float(v) for v in moved] if isinstance(moved, list) else _uint8_as_float(moved)


def _uint8_as_float(value):
    return value.float() if isinstance(value, torch.Tensor) and value.dtype == torch.uint8 else value


def split_validation(x, y, sample_weight, validation_split):
    """Keras' validation_split: the last fraction of the samples (and their weights), taken before shuffling."""
    if not 0.0 <= validation_split < 1.0:
        raise ValueError(f"validation_split must be in [0, 1), got {validation_split}")
    if not _is_array_like(x):
        raise ValueError("validation_split needs in-memory arrays or tensors; pass validation_data for other data")
    n = _length(x)
    cut = n - int(round(n * validation_split))
    if cut <= 0 or cut >= n:
        raise ValueError(f"validation_split={validation_split} leaves no training or no validation "
                         f"samples out of {n}")
    return [tuple(_take(part, rows) for part in (x, y, sample_weight)) for rows in (slice(0, cut), slice(cut, n))]


def _is_array_like(x):
    """An array or tensor, or a non-empty list or dict of them (a model's several inputs or outputs)."""
    if isinstance(x, (np.ndarray, torch.Tensor)):
        return True
    values = x.values() if isinstance(x, Mapping) else x if isinstance(x, (list, tuple)) else None
    return bool(values) and all(isinstance(v, (np.ndarray, torch.Tensor)) for v in values)


def _length(x):
    return len(next(iter(x.values())) if isinstance(x, Mapping) else x[0] if isinstance(x, (list, tuple)) else x)


def _leaves(x, label):
    """(label, array) of each array in x: `x`, `x[1]`, `x['name']`."""
    if isinstance(x, Mapping):
        return [(f"{label}[{k!r}]", v) for k, v in x.items()]
    if isinstance(x, (list, tuple)):
        return [(f"{label}[{i}]", v) for i, v in enumerate(x)]
    return [] if x is None else [(label, x)]


def _take(x, index):
    """The samples at `index` of an array, of each array in a list or dict, or None."""
    if isinstance(x, Mapping):
        return {k: v[index] for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [v[index] for v in x]
    return None if x is None else x[index]
