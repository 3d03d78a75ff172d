"""`text_dataset_from_directory`: Keras' call for folders of .txt files, without TensorFlow.

Batches are `(texts, labels)`: a list of Python strings (Keras yields string tensors) and Keras'
label encodings. Files are read in this process, as UTF-8, when their batch is due; `max_length`
keeps each text's first characters. Which files form each batch is IndexedBatches' (indexed_batches.py),
so text folders resume exactly and split across processes like image folders.
"""
from ember.data import folders
from ember.data.indexed_batches import IndexedBatches

SUFFIXES = (".txt",)


def text_dataset_from_directory(directory, labels="inferred", label_mode="int", class_names=None, batch_size=32,
                                max_length=None, shuffle=True, seed=None, validation_split=None, subset=None,
                                follow_links=False, verbose=True):
    """Batches of texts (and labels) from a folder of class sub-folders of .txt files, as Keras' function."""
    if max_length is not None and (not isinstance(max_length, int) or max_length < 1):
        raise ValueError(f"max_length must be a positive integer or None; got {max_length!r}")

    def make(paths, labels, names, subset_shuffle, seed, subset):
        return TextDataset(paths, labels, names, batch_size, subset_shuffle, seed, max_length)

    return folders.from_directory(make, directory, SUFFIXES, labels, label_mode, class_names, shuffle, seed,
                                  validation_split, subset, follow_links, verbose)


class TextDataset(IndexedBatches):
    """Batches of texts read from a list of files."""

    def __init__(self, paths, labels, class_names, batch_size, shuffle, seed, max_length):
        super().__init__(labels, batch_size, shuffle, seed)
        self.file_paths, self.class_names = list(paths), class_names
        self.num_samples = len(self.file_paths)
        self.max_length = max_length

    def read(self, file_lists):
        for files in file_lists:
            texts = []
            for file in files:
                with open(self.file_paths[file], encoding="utf-8", errors="replace") as handle:
                    texts.append(handle.read(self.max_length) if self.max_length else handle.read())
            yield texts, list(range(len(files)))
