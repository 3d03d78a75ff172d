"""Decoded images kept after their first decode: `cache=True` in memory, `cache="path"` on disk.

One uint8 array (files, height, width, channels) plus one status byte per file (EMPTY, DECODED,
FAILED), both in memory shared with the decode workers: an anonymous shared mapping, made before
the workers fork, or a file mapping on disk. Workers write what they decode straight into it; the
training process reads batches out of it once every file has been seen, with no worker at all.

A disk cache is two files, `path` (the pixels) and `path.json` (what they are: the files' paths,
sizes and modification times, and the decode options). It is reused only when that description
matches exactly, so a changed folder or option starts a fresh cache instead of serving stale pixels;
its status bytes live in the pixels file's last `files` bytes, so an interrupted first epoch
resumes where it stopped.
"""
import json
import mmap
import os
from pathlib import Path

import numpy as np

EMPTY, DECODED, FAILED = 0, 1, 2


class DecodedCache:
    def __init__(self, paths, image_shape, options: dict, location=None):
        count, pixels = len(paths), int(np.prod(image_shape))
        size = count * pixels + count
        if location is None:
            buffer = mmap.mmap(-1, max(size, 1), flags=mmap.MAP_SHARED)
        else:
            buffer = _disk_buffer(Path(location), _description(paths, image_shape, options), size)
        self._buffer = buffer
        self.images = np.frombuffer(buffer, np.uint8, count * pixels).reshape(count, *image_shape)
        self.status = np.frombuffer(buffer, np.uint8, count, offset=count * pixels)

    @property
    def complete(self) -> bool:
        return bool((self.status != EMPTY).all())

    def flush(self):
        if isinstance(self._buffer, np.memmap):
            self._buffer.flush()


def _description(paths, image_shape, options) -> dict:
    files = []
    for path in paths:
        stat = os.stat(path)
        files.append([os.fspath(path), stat.st_size, stat.st_mtime_ns])
    description = {"format": "ember decoded images 1", "image_shape": list(image_shape), "options": options,
                   "files": files}
    return json.loads(json.dumps(description))  # as it reads back: tuples become lists


def _disk_buffer(location: Path, description: dict, size: int):
    header = location.with_name(location.name + ".json")
    try:
        matches = json.loads(header.read_text()) == description and location.stat().st_size == size
    except (OSError, ValueError):
        matches = False
    if not matches:  # a new cache: the description goes last, so a crash in between leaves no valid pair
        header.unlink(missing_ok=True)
        location.parent.mkdir(parents=True, exist_ok=True)
        with open(location, "wb") as file:
            file.truncate(size)
        header.write_text(json.dumps(description))
    return np.memmap(location, np.uint8, mode="r+", shape=(size,))
