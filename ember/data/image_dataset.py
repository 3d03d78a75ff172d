"""`image_dataset_from_directory`: Keras' call, without TensorFlow, decoding in parallel worker processes.

The returned `ImageDataset` is a re-iterable of `(images, labels)` batches with a length, which
fit / evaluate / predict take as they are. Images are uint8 (Keras yields the same 0-255 values as
float32): the workers decode into uint8, batches cross processes as uint8 in shared memory, and the
trainer converts them to float32 on the model's device. channels_first batches are the NHWC decode
permuted, i.e. NCHW tensors in channels_last memory, the layout ember's fast path trains in.

Batch `b` of epoch `e` is a pure function of (seed, e, b): the files are reshuffled each epoch from
`seed + e` (Keras reshuffles each iteration too), so resuming at a step decodes only what is left.
A file that cannot be decoded is skipped with a warning naming it (`on_error="raise"`: an error).
"""
import math
import os
import warnings

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ember.config import normalize_data_format
from ember.data import folders
from ember.data.cache import DECODED, FAILED, DecodedCache
from ember.data.images import ALLOWED_SUFFIXES, CHANNELS, check_options, load_image


def image_dataset_from_directory(directory, labels="inferred", label_mode="int", class_names=None, color_mode="rgb",
                                 batch_size=32, image_size=(256, 256), shuffle=True, seed=None, validation_split=None,
                                 subset=None, interpolation="bilinear", follow_links=False, crop_to_aspect_ratio=False,
                                 pad_to_aspect_ratio=False, data_format=None, verbose=True, *, workers=None,
                                 cache=False, on_error="warn"):
    """Batches of images (and labels) from a folder of class sub-folders, as Keras' function of this name.

    Keras' arguments and rules: class order, `validation_split` with `subset` ("training",
    "validation", or "both" for a (training, validation) pair) and a `seed`, label encodings
    (`label_mode` "int" int32, "categorical" one-hot float32, "binary" float32 (n, 1), None),
    `color_mode` "grayscale" / "rgb" / "rgba", `crop_to_aspect_ratio`, `pad_to_aspect_ratio`.
    ember's own: `workers` decode processes (default: one per CPU core; 0 decodes in this
    process), `cache=True` keeps the decoded images in memory after the first epoch,
    `cache="path"` on disk; `on_error="warn"` skips an undecodable file naming it, "raise" stops.
    """
    folders.check_arguments(labels, label_mode, class_names, validation_split, subset, shuffle, seed)
    size = check_options(color_mode, image_size, interpolation, crop_to_aspect_ratio, pad_to_aspect_ratio)
    if on_error not in ("warn", "raise"):
        raise ValueError(f"on_error must be 'warn' or 'raise'; got {on_error!r}")
    if labels is None or label_mode is None:
        labels, label_mode = None, None
    seed = int(np.random.randint(1e6)) if seed is None else int(seed)
    index = folders.index_directory(directory, labels, ALLOWED_SUFFIXES, class_names, shuffle, seed, follow_links,
                                    verbose)
    if label_mode == "binary" and len(index.class_names) != 2:
        raise ValueError(f"label_mode='binary' needs exactly 2 classes; {directory} has {index.class_names}")
    options = {"image_size": size, "color_mode": color_mode, "interpolation": interpolation,
               "crop_to_aspect_ratio": bool(crop_to_aspect_ratio), "pad_to_aspect_ratio": bool(pad_to_aspect_ratio)}

    def dataset(part, subset_shuffle, subset_cache):
        if not part.paths:
            raise ValueError(f"no images in {directory} for this subset: expected files ending in {ALLOWED_SUFFIXES}")
        encoded = None if label_mode is None else folders.encode_labels(part.labels, label_mode,
                                                                        len(index.class_names))
        return ImageDataset(part.paths, encoded, index.class_names, batch_size, options,
                            normalize_data_format(data_format), subset_shuffle, seed, workers, subset_cache, on_error)

    if subset == "both":
        training = folders.split(index, validation_split, "training", verbose)
        validation = folders.split(index, validation_split, "validation", verbose)
        return (dataset(training, shuffle, cache),
                dataset(validation, False, f"{cache}.validation" if isinstance(cache, (str, os.PathLike)) else cache))
    return dataset(folders.split(index, validation_split, subset, verbose), shuffle and subset != "validation", cache)


class ImageDataset:
    """Batches of decoded images from a list of files: `len()` batches per epoch, `class_names`, `file_paths`."""

    def __init__(self, paths, labels, class_names, batch_size, options, data_format, shuffle, seed, workers, cache,
                 on_error):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
        self.file_paths, self.labels, self.class_names = list(paths), labels, class_names
        self.batch_size, self.options, self.data_format = batch_size, options, data_format
        self.shuffle, self.seed, self.on_error = shuffle, seed, on_error
        self.workers = min(os.cpu_count() or 1, 8) if workers is None else int(workers)
        height, width = options["image_size"]
        self.image_shape = (height, width, CHANNELS[options["color_mode"]])
        self.cache = None if not cache else DecodedCache(
            self.file_paths, self.image_shape, options, None if cache is True else cache)
        self.split = None  # (rank, processes): this process reads its share of every batch
        self._iterations = 0

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
        """The file indices of global batch `step` of `epoch` (all processes'; see `share`)."""
        order = self._order(epoch)
        return order[step * self.batch_size:(step + 1) * self.batch_size]

    def batches(self, epoch, start=0):
        """Yield `(batch, weight)` for steps `start`.. of `epoch`: batch is `(images, labels)` or images; weight
        is this process's share of the global batch (1 without a split)."""
        shares = [self._share(self.batch_files(epoch, step)) for step in range(start, len(self))]
        for (files, weight), (images, kept) in zip(shares, self._decoded(files for files, _ in shares)):
            if len(kept) == 0:
                continue
            images = torch.from_numpy(images)
            if self.data_format == "channels_first":
                images = images.permute(0, 3, 1, 2)  # NCHW in channels_last memory
            yield (images if self.labels is None else (images, self.labels[files[kept]])), weight

    def _order(self, epoch):
        if not self.shuffle:
            return np.arange(len(self.file_paths))
        return torch.randperm(len(self.file_paths), generator=torch.Generator().manual_seed(self.seed + epoch)).numpy()

    def _share(self, files):
        if self.split is None:
            return files, 1.0
        share = np.array_split(files, self.split[1])[self.split[0]]
        return share, len(share) * self.split[1] / len(files)

    def _decoded(self, file_lists):
        """(uint8 images, indices of the files kept) per list of file indices, in order."""
        if self.cache is not None and self.cache.complete:
            for files in file_lists:
                kept = np.flatnonzero(self.cache.status[files] == DECODED)
                yield self.cache.images[files[kept]], kept
            return
        decoder = _BatchDecoder(self.file_paths, self.options, self.image_shape, self.cache)
        if self.workers == 0:
            results = map(decoder.__getitem__, file_lists)
        else:
            results = DataLoader(decoder, batch_size=None, sampler=list(file_lists), num_workers=self.workers,
                                 multiprocessing_context="fork", prefetch_factor=4, collate_fn=_as_is)
        for images, kept, errors in results:
            self._report(errors)
            yield (images.numpy() if isinstance(images, torch.Tensor) else images), np.asarray(kept)
        if self.cache is not None:
            self.cache.flush()

    def _report(self, errors):
        for path, reason in errors:
            if self.on_error == "raise":
                raise ValueError(f"{path}: cannot be read as an image ({reason}); pass on_error='warn' to skip "
                                 "such files")
            warnings.warn(f"skipped {path}: cannot be read as an image ({reason})", stacklevel=3)


def _as_is(batch):
    return batch


class _BatchDecoder(Dataset):
    """Runs in the workers: file indices -> (uint8 images, kept positions, [(path, error)])."""

    def __init__(self, paths, options, image_shape, cache):
        self.paths, self.options, self.image_shape, self.cache = paths, options, image_shape, cache

    def __getitem__(self, files):
        images = np.empty((len(files), *self.image_shape), np.uint8)
        kept, errors = [], []
        for position, file in enumerate(files):
            status = None if self.cache is None else self.cache.status[file]
            if status == DECODED:
                images[len(kept)] = self.cache.images[file]
                kept.append(position)
                continue
            if status == FAILED:
                continue
            try:
                image = load_image(self.paths[file], **self.options)
            except Exception as error:  # any decoder failure is this file's problem, reported by name
                errors.append((self.paths[file], f"{type(error).__name__}: {error}"))
                if self.cache is not None:
                    self.cache.status[file] = FAILED
                continue
            images[len(kept)] = image
            kept.append(position)
            if self.cache is not None:
                self.cache.images[file] = image
                self.cache.status[file] = DECODED
        return torch.from_numpy(images[:len(kept)]), kept, errors
