"""`csv_dataset`: TensorFlow's `tf.data.experimental.make_csv_dataset` call for CSV files, without TensorFlow.

The files are read into memory once (tables are usually small) with Python's `csv` module; nothing
in them is evaluated. Batches are `(features, labels)`: features a dict {column name: values},
numeric columns as tensors of shape (batch,), string columns as lists of Python strings. Which rows
make batch `b` of epoch `e`, and each process's share, is IndexedBatches' (indexed_batches.py), so
tables resume exactly and split across processes like ember's folder datasets.
"""
import csv
import glob
import os
import re
import warnings

import numpy as np
import torch

from ember.data import folders
from ember.data.indexed_batches import IndexedBatches

NUMERIC_TYPES = {int: torch.int64, float: torch.float32, torch.int32: torch.int32, torch.int64: torch.int64,
                 torch.float32: torch.float32, torch.float64: torch.float64}
REQUIRED = object()  # the default of a column given as a type: a missing value there is an error
INTEGER = re.compile(r"\s*[+-]?\d+\s*")
INTEGER_RANGES = {dtype: (torch.iinfo(dtype).min, torch.iinfo(dtype).max) for dtype in (torch.int32, torch.int64)}


def csv_dataset(file_pattern, batch_size, column_names=None, column_defaults=None, label_name=None,
                select_columns=None, field_delim=",", use_quote_delim=True, na_value="", header=True, shuffle=True,
                shuffle_seed=None, ignore_errors=False, validation_split=None, subset=None):
    """Batches of table rows from CSV files, as `tf.data.experimental.make_csv_dataset` with `num_epochs=1`
    (fit asks for the next epoch itself, reshuffled).

    `file_pattern`: a path, a glob or a list of them (each one's matches sorted). `column_names`: the
    names when the files have no header (`header=False`), or to rename the header's columns; with a
    header, every file's must be the first's. `select_columns`: names or indices of the columns to
    keep (in file order). `column_defaults`: one entry per kept column (or a dict by name): a value
    (`0`, `0.0`, `"?"`) fills that column's missing fields and sets its type; a type (`int`, `float`,
    `str`, `torch.int32`, `torch.float64`, ...) makes the column required; `None` infers it. Inferred
    columns are TensorFlow's: int64 when every value present is an integer, else float32 when every
    one is a number, else strings; read from all rows (TensorFlow: the first 100), missing fields
    filled with 0 or "". A field is missing when empty or equal to `na_value`.

    `label_name`: a column whose values are the labels, or a list of columns for a dict of labels;
    None yields the features dict alone. `shuffle`: a new order of all rows each epoch, from
    `shuffle_seed` (TensorFlow shuffles within a 10,000-row buffer). `validation_split` with `subset`
    ("training", "validation", "both"), as Keras' folder datasets: rows shuffled once by the seed,
    the last fraction for validation. `ignore_errors=True` skips malformed rows (too few or many
    fields, a value not of its column's type, a required field missing) with one warning; else they
    are errors naming the file, line and column. Blank lines are skipped.
    """
    folders.check_split(validation_split, subset, shuffle, shuffle_seed, seed_name="shuffle_seed")
    if not header and column_names is None:
        raise ValueError("header=False needs column_names: the names of the columns, in file order")
    paths = _file_paths(file_pattern)
    skipped = []

    def reject(message):
        if not ignore_errors:
            raise ValueError(f"{message} (ignore_errors=True skips such rows)")
        skipped.append(message)

    dialect = {"delimiter": field_delim, "quoting": csv.QUOTE_MINIMAL if use_quote_delim else csv.QUOTE_NONE}
    names, records, where = _read_records(paths, column_names, header, dialect, reject)
    kept = _selected(select_columns, names)
    names = [names[i] for i in kept]
    for label in [label_name] if isinstance(label_name, str) else label_name or []:
        if label not in names:
            raise ValueError(f"label_name {label!r} is not a column read from {paths[0]}: expected one of {names}")
    columns, bad = {}, set()
    for position, name, (dtype, default) in zip(kept, names, _specs(column_defaults, names)):
        columns[name] = _column(name, [record[position] for record in records], dtype, default, na_value,
                                where, reject, bad)
    if skipped:
        warnings.warn(f"skipped {len(skipped)} malformed rows; the first: {skipped[0]}", stacklevel=2)
    rows = np.delete(np.arange(len(records)), sorted(bad))
    if len(rows) == 0:
        raise ValueError(f"no rows to read in {', '.join(paths)}: expected at least one row of data")
    seed = int(np.random.randint(1e6)) if shuffle_seed is None else int(shuffle_seed)

    def dataset(part, part_shuffle):
        part_columns = {name: _take(column, part) for name, column in columns.items()}
        return TableDataset(part_columns, label_name, batch_size, part_shuffle, seed, paths)

    if not validation_split:
        return dataset(rows, shuffle)
    if shuffle:
        np.random.RandomState(seed).shuffle(rows)
    cut = len(rows) - int(validation_split * len(rows))  # Keras': the last int(split * n) for validation
    if cut in (0, len(rows)):
        raise ValueError(f"validation_split={validation_split} of {len(rows)} rows leaves no rows for training or "
                         "for validation")
    training, validation = dataset(rows[:cut], shuffle), dataset(rows[cut:], False)
    return (training, validation) if subset == "both" else training if subset == "training" else validation


class TableDataset(IndexedBatches):
    """Batches of rows of a table held in memory: `len()` batches per epoch; `columns` {name: tensor or
    list of strings}, `label_name`, `file_paths`."""

    def __init__(self, columns, label_name, batch_size, shuffle, seed, file_paths):
        # The labels are columns of the rows, so `assemble` puts each batch's together with its features.
        super().__init__(None, batch_size, shuffle, seed)
        self.columns, self.label_name, self.file_paths = columns, label_name, list(file_paths)
        self.num_samples = len(next(iter(columns.values())))

    def read(self, row_lists):
        for rows in row_lists:
            yield rows, np.arange(len(rows))

    def assemble(self, rows):
        batch = {name: _take(column, rows) for name, column in self.columns.items()}
        if self.label_name is None:
            return batch
        if isinstance(self.label_name, str):
            return batch, batch.pop(self.label_name)
        return batch, {label: batch.pop(label) for label in self.label_name}


def _take(column, rows):
    """The values of a column (a tensor, or a list of strings) at the row indices `rows`."""
    return column[torch.from_numpy(rows)] if isinstance(column, torch.Tensor) else [column[row] for row in rows]


def _file_paths(file_pattern):
    patterns = [file_pattern] if isinstance(file_pattern, (str, os.PathLike)) else list(file_pattern)
    paths = []
    for pattern in map(os.fspath, patterns):
        found = [pattern] if os.path.isfile(pattern) else sorted(glob.glob(pattern))  # a name may hold [ or *
        if not found:
            raise FileNotFoundError(f"no files match {pattern!r}: expected a CSV file's path or a glob pattern")
        paths += found
    return paths


def _read_records(paths, column_names, header, dialect, reject):
    """(column names, records: lists of fields, where: (path, line) per record) of every file."""
    names, records, where = column_names and list(column_names), [], []
    for path in paths:
        lines = list(_lines(path, dialect))
        if not lines:
            raise ValueError(f"{path} is empty: expected {'a header line' if header else 'CSV rows'}")
        if header:
            (line, first), lines = lines[0], lines[1:]
            if isinstance(first, csv.Error):
                raise ValueError(f"{path}, line {line}: the header is not valid CSV ({first})")
            if column_names is None and names is not None and first != names:
                raise ValueError(f"{path}: the header's columns are {first}, but {paths[0]}'s are {names}: "
                                 "expected the same columns in every file")
            names = names or first
        if len(set(names)) != len(names):
            raise ValueError(f"column names must be unique; got {names}")
        for line, fields in lines:
            if isinstance(fields, csv.Error):
                reject(f"{path}, line {line}: not valid CSV ({fields})")
            elif len(fields) != len(names):
                reject(f"{path}, line {line}: expected {len(names)} fields ({', '.join(names)}), got {len(fields)}")
            else:
                records.append(fields)
                where.append((path, line))
    return names, records, where


def _lines(path, dialect):
    """(line number, fields or the csv.Error) per record of a file, blank lines left out."""
    with open(path, newline="", encoding="utf-8-sig") as handle:  # utf-8-sig: drop a spreadsheet's BOM
        reader = csv.reader(handle, strict=True, **dialect)
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                fields = error
            except UnicodeDecodeError as error:
                raise ValueError(f"{path} is not UTF-8 text: {error}") from None
            if fields != []:
                yield reader.line_num, fields


def _selected(select_columns, names):
    """The indices of the columns kept, in file order."""
    if select_columns is None:
        return list(range(len(names)))
    indices = []
    for column in select_columns:
        index = column if isinstance(column, int) else names.index(column) if column in names else -1
        if not 0 <= index < len(names):
            raise ValueError(f"select_columns has {column!r}, which is not a column: expected names among {names} "
                             f"or indices below {len(names)}")
        indices.append(index)
    if not indices or len(set(indices)) != len(indices):
        raise ValueError(f"select_columns must name each column it keeps once; got {list(select_columns)}")
    return sorted(indices)


def _specs(column_defaults, names):
    """(type or None to infer, default: a value, REQUIRED, or None for the type's zero) per column."""
    if column_defaults is None:
        return [(None, None)] * len(names)
    if isinstance(column_defaults, dict):
        unknown = sorted(set(column_defaults) - set(names))
        if unknown:
            raise ValueError(f"column_defaults names {unknown}, which are not columns read: expected names among "
                             f"{names}")
        column_defaults = [column_defaults.get(name) for name in names]
    if len(column_defaults) != len(names):
        raise ValueError(f"column_defaults has {len(column_defaults)} entries; expected one per column read "
                         f"({len(names)}: {names})")
    specs = []
    for name, entry in zip(names, column_defaults):
        if entry is None:
            specs.append((None, None))
        elif isinstance(entry, (type, torch.dtype)) and (entry is str or entry in NUMERIC_TYPES):
            specs.append((NUMERIC_TYPES.get(entry, str), REQUIRED))
        elif isinstance(entry, (int, float, str)) and not isinstance(entry, bool):
            specs.append((NUMERIC_TYPES.get(type(entry), str), entry))
        else:
            raise TypeError(f"column_defaults for {name!r} is {entry!r}: expected a default value (int, float or "
                            "str), a type (int, float, str, torch.int32, torch.int64, torch.float32, torch.float64) "
                            "for a required column, or None to infer it")
    return specs


def _column(name, texts, dtype, default, na_value, where, reject, bad):
    """One column's values (a tensor, or a list of strings); rows rejected are added to `bad`."""
    present = [text for text in texts if text not in ("", na_value)]
    dtype = dtype or _inferred_type(present)
    parse = None if dtype is str else _integer if not dtype.is_floating_point else _number
    zero = "" if dtype is str else 0
    values = []
    for row, text in enumerate(texts):
        try:
            if text not in ("", na_value):
                values.append(text if parse is None else parse(text, dtype))
                continue
            if default is REQUIRED:
                raise ValueError("a value is missing, and the column is required (column_defaults gives it a type, "
                                 "not a default value)")
            values.append(zero if default is None else default)
        except ValueError as error:
            path, line = where[row]
            reject(f"{path}, line {line}, column {name!r}: {error}")
            bad.add(row)
            values.append(zero)
    return values if dtype is str else torch.tensor(values, dtype=dtype)


def _inferred_type(present):
    """int64 when every value present is an integer, else float32 when every one is a number, else str."""
    for dtype, parse in ((torch.int64, _integer), (torch.float32, _number)) if present else ():
        try:
            for text in present:
                parse(text, dtype)
        except ValueError:
            continue
        return dtype
    return str


def _integer(text, dtype):
    low, high = INTEGER_RANGES[dtype]
    if not INTEGER.fullmatch(text) or not low <= int(text) <= high:
        raise ValueError(f"expected an integer ({str(dtype).replace('torch.', '')}), got {text!r}")
    return int(text)


def _number(text, dtype):
    try:
        return float(text.replace("_", "x"))  # refuse what Python's float() takes but a CSV number is not: "1_000"
    except ValueError:
        raise ValueError(f"expected a number ({str(dtype).replace('torch.', '')}), got {text!r}") from None
