"""MNIST from its IDX files (optionally gzipped), as distributed by its authors."""
import gzip
from pathlib import Path

import numpy as np

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def load_idx(path) -> np.ndarray:
    """Read one IDX file (e.g. train-images-idx3-ubyte[.gz]) into a numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise ValueError(f"{path} is not an IDX file (expected magic 0x0000TTDD, got {data[:4].hex()})")
    dtype, rank = np.dtype(_DTYPES[data[2]]), data[3]
    header = 4 + 4 * rank
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(rank)]
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(f"{path}: header says shape {tuple(dims)} ({expected} bytes) but the file holds "
                         f"{len(data) - header} bytes of data (truncated or corrupt)")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def load_mnist(directory, kind="train"):
    """`(images, labels)` from `directory`: images float32 in [0, 1] of shape (N, 1, 28, 28)."""
    directory = Path(directory)
    prefix = "train" if kind == "train" else "t10k"

    def find(stem):
        for name in (stem, stem + ".gz"):
            if (directory / name).exists():
                return directory / name
        raise FileNotFoundError(f"{directory} has no {stem}[.gz]")

    images = load_idx(find(f"{prefix}-images-idx3-ubyte"))
    labels = load_idx(find(f"{prefix}-labels-idx1-ubyte"))
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels in {directory}")
    return (images.astype(np.float32) / 255.0)[:, None], labels.astype(np.int64)
