"""Which files a `*_dataset_from_directory` call reads and what their labels are, as Keras decides it.

Keras' rules (keras/src/utils/dataset_utils.py), kept exactly so a folder gives the same classes,
order and split in ember as in Keras: class names are the sorted sub-folder names (not starting
with "."), or `class_names` in the order given; files are walked sorted (folder path, then name)
with allowed suffixes; with `shuffle`, the path list and the labels are each shuffled by
`np.random.RandomState(seed)`; `validation_split` takes the last `int(split * n)` files for
validation.
"""
import os
from dataclasses import dataclass

import numpy as np


@dataclass
class FolderIndex:
    paths: list                 # file paths, in dataset order
    labels: np.ndarray | None   # int32 class index per path, or None
    class_names: list | None


def from_directory(make, directory, suffixes, labels, label_mode, class_names, shuffle, seed, validation_split,
                   subset, follow_links, verbose):
    """Keras' `*_dataset_from_directory` flow: check, index, encode labels, split; `make(paths, labels,
    class_names, shuffle, seed, subset)` builds one dataset, or two for subset="both"."""
    _check_arguments(labels, label_mode, class_names, validation_split, subset, shuffle, seed)
    if labels is None or label_mode is None:
        labels, label_mode = None, None
    seed = int(np.random.randint(1e6)) if seed is None else int(seed)
    index = index_directory(directory, labels, suffixes, class_names, shuffle, seed, follow_links, verbose)
    if label_mode == "binary" and len(index.class_names) != 2:
        raise ValueError(f"label_mode='binary' needs exactly 2 classes; {directory} has {index.class_names}")

    def dataset(part_subset):
        part = split(index, validation_split, part_subset, verbose)
        if not part.paths:
            raise ValueError(f"no files in {directory} for subset {part_subset!r}: expected files ending in "
                             f"{suffixes}")
        encoded = None if label_mode is None else encode_labels(part.labels, label_mode, len(index.class_names))
        return make(part.paths, encoded, index.class_names, shuffle and part_subset != "validation", seed,
                    part_subset)

    return (dataset("training"), dataset("validation")) if subset == "both" else dataset(subset)


def _check_arguments(labels, label_mode, class_names, validation_split, subset, shuffle, seed):
    if labels not in ("inferred", None) and not isinstance(labels, (list, tuple)):
        raise ValueError(f"labels must be 'inferred', None, or a list/tuple of integer labels (one per file, in "
                         f"the sorted order of the file paths); got {labels!r}")
    if isinstance(labels, (list, tuple)) and class_names:
        raise ValueError(f"class_names goes with labels='inferred' only; got labels=<{len(labels)} labels> and "
                         f"class_names={class_names!r}")
    if label_mode not in ("int", "categorical", "binary", None):
        raise ValueError(f"label_mode must be 'int', 'categorical', 'binary' or None; got {label_mode!r}")
    check_split(validation_split, subset, shuffle, seed)


def check_split(validation_split, subset, shuffle, seed, seed_name="seed"):
    """Keras' rules for `validation_split` and `subset` (shared with ember.data's tables)."""
    if validation_split and not 0 < validation_split < 1:
        raise ValueError(f"validation_split must be between 0 and 1; got {validation_split}")
    if bool(validation_split) != bool(subset):
        raise ValueError(f"validation_split and subset go together; got validation_split={validation_split!r}, "
                         f"subset={subset!r}")
    if subset not in ("training", "validation", "both", None):
        raise ValueError(f"subset must be 'training', 'validation' or 'both'; got {subset!r}")
    if validation_split and shuffle and seed is None:
        raise ValueError(f"validation_split with shuffle=True needs a seed ({seed_name}=), so that the training "
                         "and validation subsets (made by separate calls) do not overlap")


def index_directory(directory, labels, formats, class_names=None, shuffle=True, seed=None, follow_links=False,
                    verbose=True) -> FolderIndex:
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{directory} is not a folder: expected a folder of class sub-folders of files")
    if labels == "inferred":
        folders = [name for name in sorted(os.listdir(directory))
                   if os.path.isdir(os.path.join(directory, name)) and not name.startswith(".")]
        if class_names is not None:
            if not set(class_names) <= set(folders):
                raise ValueError(f"class_names {list(class_names)} are not all sub-folders of {directory}: "
                                 f"expected names among {folders}")
            folders = list(class_names)
    else:
        if class_names is not None:
            raise ValueError("class_names goes with labels='inferred' only")
        folders = [""]
    paths, file_labels = [], []
    for index, folder in enumerate(folders):
        found = list(_valid_files(os.path.join(directory, folder), follow_links, formats))
        paths += found
        file_labels += [index] * len(found)
    if labels == "inferred":
        names, label_array = folders, np.asarray(file_labels, np.int32)
    elif labels is None:
        names, label_array = None, None
    else:
        if len(labels) != len(paths):
            raise ValueError(f"labels has {len(labels)} entries but {directory} holds {len(paths)} files with "
                             f"suffixes {formats}: expected one label per file")
        names, label_array = [str(label) for label in sorted(set(labels))], np.asarray(labels, np.int32)
    if verbose:
        classes = "" if label_array is None else f" belonging to {len(names)} classes"
        print(f"Found {len(paths)} files{classes}.")
    if shuffle:
        np.random.RandomState(seed).shuffle(paths)
        if label_array is not None:
            np.random.RandomState(seed).shuffle(label_array)
    return FolderIndex(paths, label_array, names)


def _valid_files(folder, follow_links, formats):
    for root, _, files in sorted(os.walk(folder, followlinks=follow_links), key=lambda entry: entry[0]):
        for name in sorted(files):
            if name.lower().endswith(formats):
                yield os.path.join(root, name)


def split(index: FolderIndex, validation_split, subset, verbose=True) -> FolderIndex:
    """Keras' split: the first files for training, the last `int(validation_split * n)` for validation."""
    if not validation_split:
        return index
    validation = int(validation_split * len(index.paths))
    cut = len(index.paths) - validation
    rows = slice(0, cut) if subset == "training" else slice(cut, None)
    if verbose:
        print(f"Using {cut if subset == 'training' else validation} files for {subset}.")
    labels = None if index.labels is None else index.labels[rows]
    return FolderIndex(index.paths[rows], labels, index.class_names)


def encode_labels(labels: np.ndarray, label_mode, num_classes):
    """int32 indices -> Keras' encodings: "int" int32 (n,), "categorical" float32 one-hot, "binary" float32 (n, 1)."""
    import torch

    labels = torch.from_numpy(np.ascontiguousarray(labels, np.int64))
    if label_mode == "categorical":
        return torch.nn.functional.one_hot(labels, num_classes).float()
    if label_mode == "binary":
        return labels.float().unsqueeze(1)
    return labels.int()
