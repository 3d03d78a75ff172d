"""Tokenized text-classification batches for `fit` / `evaluate` / `predict`.

Texts are tokenized once, without padding; each batch is padded to its own longest
text (dynamic padding), and training batches group texts of similar length
(`batching.py`), which removes most of the padding a fixed length or a random batch
would compute. Batches are dicts (`input_ids`, `attention_mask`, `labels`), so a
Hugging Face model computes its own loss.
"""
import warnings
from pathlib import Path

import numpy as np
import torch

from ember.hf.batching import LengthGroupedBatchSampler
from ember.hf.checks import check_labels, check_max_length, check_tokenizer_matches_model, default_max_length
from ember.hf.csv_text import read_text_csv


class TextClassificationData:
    """A re-iterable of dict batches with `len()`; `fit` calls `sampler.set_epoch(e)` each epoch."""

    def __init__(self, input_ids, labels, *, pad_token_id, batch_size, shuffle, group_by_length, seed,
                 label_names, max_length):
        self.input_ids, self.labels = input_ids, labels
        self.lengths = np.fromiter((len(ids) for ids in input_ids), dtype=np.int64, count=len(input_ids))
        self.pad_token_id = pad_token_id
        self.label_names, self.max_length = label_names, max_length
        self.sampler = LengthGroupedBatchSampler(self.lengths, batch_size, shuffle=shuffle,
                                                 group_by_length=group_by_length, seed=seed)

    def __len__(self):
        return len(self.sampler)

    @property
    def num_samples(self):
        return len(self.input_ids)

    def __iter__(self):
        for rows in self.sampler:
            yield self.collate(rows)

    def collate(self, rows):
        """The batch of these rows, padded to its longest text."""
        longest = int(self.lengths[rows].max())
        ids = np.full((len(rows), longest), self.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(rows), longest), dtype=np.int64)
        for i, row in enumerate(rows):
            n = self.lengths[row]
            ids[i, :n] = self.input_ids[row]
            mask[i, :n] = 1
        batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
        if self.labels is not None:
            batch["labels"] = torch.from_numpy(self.labels[rows])
        return batch

    def padding_stats(self, epoch=0):
        """(real tokens, tokens computed after padding) over one epoch's batches."""
        self.sampler.set_epoch(epoch)
        real = int(self.lengths.sum())
        padded = sum(len(rows) * int(self.lengths[rows].max()) for rows in self.sampler)
        return real, padded


def text_classification_data(tokenizer, texts, labels=None, *, model=None, max_length=None, batch_size=32,
                             shuffle=False, group_by_length=None, truncation=True, label_names=None,
                             text_column="text", label_column="label"):
    """Batches for fine-tuning or evaluating a sequence classifier.

    texts: a list of strings, a CSV file path (columns `text_column`, `label_column`; lines that are
    not valid UTF-8 are decoded with replacement and counted in a warning) or a `datasets.Dataset`.
    labels: class ids, or class names (mapped by `label_names`, else by `model.config.label2id`).
    model: the model to be trained; given, the tokenizer's vocabulary, `max_length` and the labels
    are checked against it. max_length: longest token sequence (default: the tokenizer's limit, at
    most the model's positions); longer texts are truncated with a warning, or raise when
    `truncation=False`. shuffle: reshuffle every epoch (training); group_by_length (default: same as
    shuffle) batches texts of similar length together. Shuffled orders follow `ember.seed()`.
    """
    texts, labels = _texts_and_labels(texts, labels, text_column, label_column)
    config = getattr(model, "config", None)
    if model is not None:
        check_tokenizer_matches_model(tokenizer, model)
    max_length = default_max_length(tokenizer, config) if max_length is None else int(max_length)
    check_max_length(max_length, config)
    if label_names is None and labels and isinstance(labels[0], str) and config is not None:
        label_names = [config.id2label[i] for i in range(config.num_labels)]
    labels = check_labels(labels, label_names, getattr(config, "num_labels", None) if config else None)
    input_ids = _tokenize(tokenizer, texts, max_length, truncation)
    if tokenizer.pad_token_id is None:
        raise ValueError(f"the tokenizer {type(tokenizer).__name__} has no pad token: set "
                         "tokenizer.pad_token (e.g. to tokenizer.eos_token) before batching")
    group_by_length = shuffle if group_by_length is None else group_by_length
    seed = int(torch.randint(0, 2**62, (1,)).item()) if shuffle else 0  # follows ember.seed()
    return TextClassificationData(input_ids, labels, pad_token_id=tokenizer.pad_token_id, batch_size=batch_size,
                                  shuffle=shuffle, group_by_length=group_by_length, seed=seed,
                                  label_names=label_names, max_length=max_length)


def _texts_and_labels(texts, labels, text_column, label_column):
    if isinstance(texts, (str, Path)):
        if labels is not None:
            raise ValueError("labels come from the CSV's label_column when texts is a file path; got labels= too")
        return read_text_csv(texts, text_column, label_column)
    if hasattr(texts, "column_names"):  # a datasets.Dataset
        if text_column not in texts.column_names:
            raise ValueError(f"the Dataset has no column {text_column!r}; its columns are {texts.column_names}")
        if labels is None and label_column in texts.column_names:
            labels = texts[label_column]
        return list(texts[text_column]), (None if labels is None else list(labels))
    texts = list(texts)
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise TypeError(f"texts must be strings; texts[{bad}] is a {type(texts[bad]).__name__}")
    if labels is not None:
        labels = labels.tolist() if isinstance(labels, (np.ndarray, torch.Tensor)) else list(labels)
        if len(labels) != len(texts):
            raise ValueError(f"got {len(texts)} texts but {len(labels)} labels: they must match")
    if not texts:
        raise ValueError("no texts: nothing to train or evaluate on")
    return texts, labels


def _tokenize(tokenizer, texts, max_length, truncation):
    """Token ids per text, truncated to max_length; says how many texts were cut."""
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError(f"{type(tokenizer).__name__} is a slow (Python) tokenizer: load a fast one "
                        "(AutoTokenizer.from_pretrained(path), the default) so it can also be exported")
    encoded = tokenizer(texts, truncation=True, max_length=max_length, return_attention_mask=False,
                        return_token_type_ids=False)
    cut = [i for i, e in enumerate(encoded.encodings) if e.overflowing]
    if cut:
        message = (f"{len(cut):,} of {len(texts):,} texts are longer than max_length={max_length} tokens "
                   f"(e.g. texts[{cut[0]}])")
        if not truncation:
            raise ValueError(message + ": raise max_length or pass truncation=True to cut them")
        warnings.warn(message + "; they were truncated", stacklevel=3)
    return [np.asarray(ids, dtype=np.int64) for ids in encoded["input_ids"]]
