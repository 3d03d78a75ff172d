"""`image_stream`: images from sharded streams larger than memory (WebDataset tar shards, or any Hugging
Face `datasets.IterableDataset`), read by Hugging Face `datasets` in streaming mode.

Memory stays bounded whatever the data's size: samples are read one by one from the shards, kept
undecoded in one shuffle block (`shuffle_buffer` samples), and decoded by worker processes a few
batches ahead of training. Order is a pure function of (seed, pass, position), so a resumed run
continues exactly:
- shard order: `datasets`' own shard shuffle, seeded with `seed + pass`;
- sample order: consecutive blocks of `shuffle_buffer` samples, each permuted by a generator seeded
  with (seed, pass, block); resuming at step s skips the first s batches' samples undecoded.
Under DDP each process reads its own shards (`datasets.distributed.split_dataset_by_node`) and
yields its share of every global batch, weighted as the other sources' shares. A stream has no
length: give fit `steps_per_epoch` (epochs then continue the stream; a pass that runs out starts the
next, as in Keras), or let each epoch be one pass.
"""
import collections
import glob
import math
import multiprocessing
import os
import signal

import numpy as np
import torch

from ember.config import normalize_data_format
from ember.data.images import check_on_error, decode_options, image_shape, load_image, report_decode_errors

LABEL_KEYS = ("cls", "label", "labels")


def image_stream(source, image_key=None, label_key="auto", *, batch_size=32, image_size=(256, 256), color_mode="rgb",
                 interpolation="bilinear", crop_to_aspect_ratio=False, pad_to_aspect_ratio=False, data_format=None,
                 shuffle=True, seed=None, shuffle_buffer=1000, workers=None, on_error="warn"):
    """Batches of `(images, labels)` (or images) streamed from `source`: a glob or list of WebDataset `.tar`
    shards (`key.jpg` + `key.cls` members, as `webdataset` writes them), or a `datasets.IterableDataset`.

    `image_key`: the image column (default: the first Image feature); `label_key`: the integer label
    column (default: "cls", "label" or "labels" when present; None: no labels). The image options are
    `image_dataset_from_directory`'s. `shuffle_buffer`: samples shuffled together (kept undecoded).
    """
    options = decode_options(color_mode, image_size, interpolation, crop_to_aspect_ratio, pad_to_aspect_ratio)
    check_on_error(on_error)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
    if not isinstance(shuffle_buffer, int) or shuffle_buffer < 1:
        raise ValueError(f"shuffle_buffer must be a positive integer; got {shuffle_buffer!r}")
    dataset = _streaming_dataset(source)
    features = dataset.features or {}
    if image_key is None:
        image_key = next((name for name, f in features.items() if type(f).__name__ == "Image"), None)
        if image_key is None:
            raise ValueError(f"no image column in the stream (columns: {list(features)}): pass image_key=")
    elif features and image_key not in features:
        raise ValueError(f"image_key {image_key!r} is not a column of the stream: expected one of {list(features)}")
    if label_key == "auto":
        label_key = next((name for name in LABEL_KEYS if name in features), None)
    elif label_key is not None and features and label_key not in features:
        raise ValueError(f"label_key {label_key!r} is not a column of the stream: expected one of {list(features)}")
    names = getattr(features.get(label_key), "names", None) if label_key else None
    stream = ImageStream(dataset.decode(False), image_key, label_key, names, options,
                         normalize_data_format(data_format), batch_size, shuffle,
                         int(np.random.randint(1e6)) if seed is None else int(seed), shuffle_buffer,
                         min(os.cpu_count() or 1, 8) if workers is None else int(workers), on_error)
    stream.num_samples = len(source) if hasattr(source, "__len__") and not isinstance(source, (str, list)) else None
    return stream


def _streaming_dataset(source):
    import datasets

    if isinstance(source, datasets.IterableDataset):
        return source
    if isinstance(source, datasets.Dataset):
        return source.to_iterable_dataset(num_shards=min(len(source), 64))
    patterns = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    shards = sorted({path for pattern in map(os.fspath, patterns) for path in (glob.glob(pattern) or [pattern])})
    missing = [path for path in shards if not os.path.isfile(path)]
    if missing or not shards:
        raise FileNotFoundError(f"image_stream: expected WebDataset .tar shards, but {missing or patterns} "
                                "match no file")
    return datasets.load_dataset("webdataset", data_files={"train": shards}, split="train", streaming=True)


class ImageStream:
    """A re-iterable stream of image batches; no length (see the module's docstring)."""

    def __init__(self, dataset, image_key, label_key, class_names, options, data_format, batch_size, shuffle, seed,
                 shuffle_buffer, workers, on_error):
        self.dataset, self.image_key, self.label_key, self.class_names = dataset, image_key, label_key, class_names
        self.options, self.data_format, self.batch_size = options, data_format, batch_size
        self.shuffle, self.seed, self.shuffle_buffer, self.workers = shuffle, seed, shuffle_buffer, workers
        self.on_error = on_error
        self.image_shape = image_shape(options)
        self.split = None
        self.num_samples = None  # known for a map-style datasets.Dataset
        self._passes = 0

    def __len__(self):
        """Batches per pass, known for a map-style `datasets.Dataset` in one process; a stream has no length."""
        if self.num_samples is None or self.split is not None:
            raise TypeError("a stream has no length: give fit steps_per_epoch, or let each epoch be one pass")
        return math.ceil(self.num_samples / self.batch_size)

    def __iter__(self):
        data_pass, self._passes = self._passes, self._passes + 1
        for batch, _ in self.batches(data_pass):
            yield batch

    def split_across(self, rank: int, processes: int) -> None:
        """From now on read only this process's shards and yield its share of every global batch."""
        self.split = (rank, processes)

    def batches(self, data_pass, start=0):
        """Yield `(batch, weight)` for the batches `start`.. of pass `data_pass`."""
        share = self.batch_size if self.split is None else \
            len(np.array_split(np.arange(self.batch_size), self.split[1])[self.split[0]])
        weight = 1.0 if self.split is None else share * self.split[1] / self.batch_size
        samples = self._samples(data_pass)
        for _ in range(start * share):  # skipped undecoded
            if next(samples, None) is None:
                return
        for images, labels in self._decoded(_chunks(samples, share)):
            images = torch.from_numpy(images)
            if self.data_format == "channels_first":
                images = images.permute(0, 3, 1, 2)  # NCHW in channels_last memory
            yield (images if labels is None else (images, torch.from_numpy(labels))), weight

    def _samples(self, data_pass):
        """This process's raw samples of the pass, in their shuffled order: (image bytes or path, label, name)."""
        from datasets.distributed import split_dataset_by_node

        dataset = self.dataset.shuffle(seed=self.seed + data_pass, buffer_size=1) if self.shuffle else self.dataset
        if self.split is not None:
            dataset = split_dataset_by_node(dataset, rank=self.split[0], world_size=self.split[1])
        rows = (self._raw(row) for row in dataset)
        if not self.shuffle:
            yield from rows
            return
        for block_index, block in enumerate(_chunks(rows, self.shuffle_buffer)):
            order = np.random.default_rng([self.seed, data_pass, block_index]).permutation(len(block))
            yield from (block[i] for i in order)

    def _raw(self, row):
        image = row[self.image_key]
        source = image.get("bytes") or image.get("path") if isinstance(image, dict) else image
        name = f"{row.get('__url__', '')}:{row.get('__key__', '')}" if "__key__" in row else repr(image)[:80]
        return source, None if self.label_key is None else int(row[self.label_key]), name

    def _decoded(self, raw_batches):
        """(uint8 images, int64 labels or None) per raw batch, decoded `workers` batches ahead, in order."""
        pool = None if self.workers == 0 else _decode_pool(self.workers)
        pending = collections.deque()
        try:
            for raw in raw_batches:
                job = (raw, self.options, self.image_shape)
                pending.append(pool.apply_async(_decode_batch, job) if pool else _Done(_decode_batch(*job)))
                if len(pending) > 2 * max(self.workers, 1):
                    yield from self._finish(pending.popleft().get())
            while pending:
                yield from self._finish(pending.popleft().get())
        finally:
            if pool is not None:
                pool.terminate()

    def _finish(self, decoded):
        images, labels, errors = decoded
        report_decode_errors(errors, self.on_error, stacklevel=5)
        if len(images):
            yield images, None if self.label_key is None else np.asarray(labels, np.int64)


def _decode_pool(workers):
    """A fork pool whose workers end on SIGTERM (what `terminate()` sends) whatever handler the training
    process has (fit's preemption handler). A Python handler in a just-forked child can lose a SIGTERM:
    Python drops the signals pending at fork, so a stream closed right after it started could wait forever
    on a worker that never ends. The workers are forked with SIGTERM blocked and restore its default action
    before they unblock it: one sent meanwhile is held, then ends them."""
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        return multiprocessing.get_context("fork").Pool(workers, initializer=_default_sigterm, initargs=(mask,))
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _default_sigterm(mask):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)


class _Done:
    def __init__(self, value):
        self.value = value

    def get(self):
        return self.value


def _chunks(iterable, size):
    chunk = []
    for item in iterable:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _decode_batch(raw, options, image_shape):
    """In a worker: [(bytes or path, label, name)] -> (uint8 images, labels, [(name, error)])."""
    import io

    images = np.empty((len(raw), *image_shape), np.uint8)
    labels, errors = [], []
    for source, label, name in raw:
        try:
            images[len(labels)] = load_image(io.BytesIO(source) if isinstance(source, bytes) else source, **options)
        except Exception as error:  # any decoder failure is this sample's problem, reported by name
            errors.append((name, f"{type(error).__name__}: {error}"))
            continue
        labels.append(label)
    return images[:len(labels)], labels, errors
