"""Checks that turn silent or cryptic fine-tuning failures into clear messages before training."""
import warnings

import numpy as np

_UNBOUNDED = 1_000_000  # transformers' "no limit" model_max_length is ~1e30


def check_tokenizer_matches_model(tokenizer, model):
    """A tokenizer with more tokens than the model has embedding rows produces ids the model cannot
    look up (an IndexError deep inside the embedding); a much smaller one is usually another checkpoint's."""
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    rows = getattr(embeddings, "num_embeddings", None) or getattr(getattr(model, "config", None), "vocab_size", None)
    if rows is None:
        return
    tokens = len(tokenizer)
    name = getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__
    if tokens > rows:
        raise ValueError(f"the tokenizer has {tokens:,} tokens but the model ({name}) has {rows:,} embedding "
                         "rows: they come from different checkpoints (load both from the same path), or the "
                         "tokenizer gained tokens (call model.resize_token_embeddings(len(tokenizer)))")
    if rows - tokens > max(512, rows // 100):
        warnings.warn(f"the tokenizer has {tokens:,} tokens but the model ({name}) has {rows:,} embedding rows: "
                      "are they from the same checkpoint?", stacklevel=3)


def default_max_length(tokenizer, config):
    """The tokenizer's limit, capped by the model's position embeddings (512 when neither says)."""
    limits = [getattr(tokenizer, "model_max_length", None), getattr(config, "max_position_embeddings", None)]
    limits = [int(n) for n in limits if n and n < _UNBOUNDED]
    return min(limits) if limits else 512


def check_max_length(max_length, config):
    positions = getattr(config, "max_position_embeddings", None)
    if max_length < 2:
        raise ValueError(f"max_length must leave room for the special tokens, got {max_length}")
    if positions is not None and max_length > positions:
        raise ValueError(f"max_length={max_length} is longer than the model's {positions} position embeddings")


def check_labels(labels, label_names, num_labels):
    """Labels as an int64 array of class ids in [0, num_labels); names are mapped through `label_names`."""
    if labels is None:
        return None
    if label_names is not None and num_labels is not None and len(label_names) != num_labels:
        raise ValueError(f"label_names has {len(label_names)} names but the model has num_labels={num_labels}")
    if any(isinstance(label, str) for label in labels):
        if label_names is None:
            raise ValueError(f"labels are names (e.g. {next(x for x in labels if isinstance(x, str))!r}): pass "
                             "label_names=[...] (index = class id) or a model whose config has id2label")
        ids = {name: i for i, name in enumerate(label_names)}
        unknown = next((i for i, label in enumerate(labels) if label not in ids), None)
        if unknown is not None:
            raise ValueError(f"labels[{unknown}] is {labels[unknown]!r}, which is not one of {list(label_names)}")
        return np.array([ids[label] for label in labels], dtype=np.int64)
    array = np.asarray(labels)
    if array.dtype.kind not in "iub" or array.ndim != 1:
        raise ValueError(f"labels must be class ids (integers) or names, got {array.dtype} values of shape "
                         f"{array.shape}")
    array = array.astype(np.int64)
    limit = num_labels if num_labels is not None else (len(label_names) if label_names is not None else None)
    bad = np.flatnonzero((array < 0) | (array >= limit)) if limit is not None else np.flatnonzero(array < 0)
    if bad.size:
        expected = f"[0, {limit})" if limit is not None else "non-negative"
        raise ValueError(f"labels must be in {expected} (num_labels={limit}); labels[{bad[0]}] is {array[bad[0]]} "
                         f"({bad.size:,} labels out of range)")
    return array
