"""`image_dataset_from_directory`: Keras' call, without TensorFlow, decoding in parallel worker processes.

The returned `ImageDataset` is a re-iterable of `(images, labels)` batches with a length, which
fit / evaluate / predict take as they are. Images are uint8 (Keras yields the same 0-255 values as
float32): the workers decode into uint8, batches cross processes as uint8 in shared memory, and the
trainer converts them to float32 on the model's device. channels_first batches are the NHWC decode
permuted, i.e. NCHW tensors in channels_last memory, the layout ember's fast path trains in.

Which files make batch `b` of epoch `e`, and each process's share, is IndexedBatches' (indexed_batches.py).
A file that cannot be decoded is skipped with a warning naming it (`on_error="raise"`: an error).
"""
import os

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ember.config import normalize_data_format
from ember.data import folders
from ember.data.cache import DECODED, FAILED, DecodedCache
from ember.data.indexed_batches import IndexedBatches
from ember.data.images import (ALLOWED_SUFFIXES, check_on_error, decode_options, image_shape, load_image,
                               report_decode_errors)


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
    options = decode_options(color_mode, image_size, interpolation, crop_to_aspect_ratio, pad_to_aspect_ratio)
    check_on_error(on_error)
    layout = normalize_data_format(data_format)

    def make(paths, labels, names, subset_shuffle, seed, subset):
        subset_cache = f"{cache}.{subset}" if subset == "validation" and isinstance(cache, (str, os.PathLike)) \
            else cache
        return ImageDataset(paths, labels, names, batch_size, options, layout, subset_shuffle, seed, workers,
                            subset_cache, on_error)

    return folders.from_directory(make, directory, ALLOWED_SUFFIXES, labels, label_mode, class_names, shuffle, seed,
                                  validation_split, subset, follow_links, verbose)


class ImageDataset(IndexedBatches):
    """Batches of decoded images from a list of files: `len()` batches per epoch, `class_names`, `file_paths`."""

    def __init__(self, paths, labels, class_names, batch_size, options, data_format, shuffle, seed, workers, cache,
                 on_error):
        super().__init__(labels, batch_size, shuffle, seed)
        self.file_paths, self.class_names = list(paths), class_names
        self.num_samples = len(self.file_paths)
        self.options, self.data_format, self.on_error = options, data_format, on_error
        self.workers = min(os.cpu_count() or 1, 8) if workers is None else int(workers)
        self.image_shape = image_shape(options)
        self.cache = None if not cache else DecodedCache(
            self.file_paths, self.image_shape, options, None if cache is True else cache)

    def assemble(self, images):
        images = torch.from_numpy(images)  # NHWC; channels_first is its NCHW view, in channels_last memory
        return images.permute(0, 3, 1, 2) if self.data_format == "channels_first" else images

    def read(self, file_lists):
        """(uint8 images, positions of the files kept) per list of file indices, in order."""
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
            report_decode_errors(errors, self.on_error)
            yield (images.numpy() if isinstance(images, torch.Tensor) else images), np.asarray(kept)
        if self.cache is not None:
            self.cache.flush()


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
