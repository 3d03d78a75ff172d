import numpy as np
import pytest
import torch

import ember
from ember import layers, ops
from ember.data import TableDataset, csv_dataset


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def plain(batch):
    """A batch as Python lists, to compare batches with ==."""
    if isinstance(batch, tuple):
        return tuple(plain(part) for part in batch)
    if isinstance(batch, dict):
        return {name: plain(values) for name, values in batch.items()}
    return batch.tolist() if isinstance(batch, torch.Tensor) else batch


@pytest.fixture
def table(tmp_path):
    """20 rows: an integer, a float, a string and two label columns."""
    rows = "".join(f"{n},{n / 4},word {n},{n % 3},{n * 2.5}\n" for n in range(20))
    return write(tmp_path / "table.csv", "count,ratio,text,kind,target\n" + rows)


def test_columns_types_and_batches(table):
    dataset = csv_dataset(table, batch_size=8, label_name="kind", shuffle=False)
    assert isinstance(dataset, TableDataset) and len(dataset) == 3 and dataset.num_samples == 20
    features, labels = next(iter(dataset))
    assert list(features) == ["count", "ratio", "text", "target"]
    assert features["count"].dtype == torch.int64 and features["count"].shape == (8,)
    assert features["ratio"].dtype == torch.float32 and features["ratio"].tolist() == [n / 4 for n in range(8)]
    assert features["text"] == [f"word {n}" for n in range(8)]
    assert labels.dtype == torch.int64 and labels.tolist() == [n % 3 for n in range(8)]
    assert [len(batch[1]) for batch in dataset] == [8, 8, 4]


def test_several_labels_are_a_dict_and_no_label_gives_the_features_alone(table):
    features, labels = next(iter(csv_dataset(table, 4, label_name=["target", "kind"], shuffle=False)))
    assert list(features) == ["count", "ratio", "text"] and list(labels) == ["target", "kind"]
    assert labels["target"].dtype == torch.float32 and labels["kind"].tolist() == [0, 1, 2, 0]
    only = next(iter(csv_dataset(table, 4, select_columns=["ratio", 0], shuffle=False)))
    assert plain(only) == {"count": [0, 1, 2, 3], "ratio": [0.0, 0.25, 0.5, 0.75]}


def test_no_header_quotes_delimiters_and_inference(tmp_path):
    path = write(tmp_path / "raw.csv", '1;"a;b";2;x\n2;"say ""hi""";2.5;\n\n-3;plain; 4 ;7\n')
    batch = next(iter(csv_dataset(path, 3, column_names=["n", "s", "f", "mixed"], field_delim=";", header=False,
                                  shuffle=False)))
    assert plain(batch) == {"n": [1, 2, -3], "s": ["a;b", 'say "hi"', "plain"], "f": [2.0, 2.5, 4.0],
                            "mixed": ["x", "", "7"]}
    literal = next(iter(csv_dataset(write(tmp_path / "q.csv", 'a,b\n"x",1\n'), 1, use_quote_delim=False)))
    assert literal["a"] == ['"x"']
    renamed = next(iter(csv_dataset(path, 1, column_names=["a", "b", "c", "d"], field_delim=";", shuffle=False)))
    assert plain(renamed) == {"a": [2], "b": ['say "hi"'], "c": [2.5], "d": [0]}  # header=True: line 1 skipped


def test_missing_values_with_and_without_defaults(tmp_path):
    path = write(tmp_path / "gaps.csv", "a,b,c\n1,,x\n?,2.5,\n3,1,y\n")
    inferred = next(iter(csv_dataset(path, 3, na_value="?", shuffle=False)))
    assert plain(inferred) == {"a": [1, 0, 3], "b": [0.0, 2.5, 1.0], "c": ["x", "", "y"]}  # TensorFlow's 0 / ""
    given = next(iter(csv_dataset(path, 3, column_defaults=[-1, 9.5, "none"], na_value="?", shuffle=False)))
    assert plain(given) == {"a": [1, -1, 3], "b": [9.5, 2.5, 1.0], "c": ["x", "none", "y"]}
    with pytest.warns(UserWarning, match="skipped 2 malformed rows"):
        typed = next(iter(csv_dataset(path, 3, column_defaults={"a": torch.int32, "b": float}, na_value="?",
                                      select_columns=["a", "b"], ignore_errors=True, shuffle=False)))
    assert typed["a"].dtype == torch.int32 and plain(typed) == {"a": [3], "b": [1.0]}
    with pytest.raises(ValueError, match=r"gaps.csv, line 3, column 'a': a value is missing, and the column is "
                                         "required"):
        csv_dataset(path, 3, column_defaults=[int, 0.0, ""], na_value="?")


def test_several_files_by_glob_and_list(tmp_path):
    for n in range(3):
        write(tmp_path / f"part{n}.csv", f"x,y\n{n},{n * 10}\n{n}.5,{n * 10 + 1}\n")
    write(tmp_path / "other.txt", "not,a\ntable,x\n")
    dataset = csv_dataset(str(tmp_path / "part*.csv"), 10, label_name="y", shuffle=False)
    assert [p.rsplit("/", 1)[1] for p in dataset.file_paths] == ["part0.csv", "part1.csv", "part2.csv"]
    assert plain(next(iter(dataset))) == ({"x": [0, 0.5, 1, 1.5, 2, 2.5]}, [0, 1, 10, 11, 20, 21])
    write(tmp_path / "part[1].csv", "x,y\n7,70\n")
    listed = csv_dataset([tmp_path / "part2.csv", tmp_path / "part0.csv", tmp_path / "part[1].csv"], 10, shuffle=False)
    assert plain(next(iter(listed)))["y"] == [20, 21, 0, 1, 70]


def test_shuffle_is_repeatable_new_each_epoch_and_every_row_once(table):
    dataset = csv_dataset(table, 6, label_name="kind", shuffle_seed=3)
    epochs = [[plain(batch) for batch in dataset] for _ in range(2)]
    again = csv_dataset(table, 6, label_name="kind", shuffle_seed=3)
    assert [plain(batch) for batch in again] == epochs[0] and epochs[0] != epochs[1]
    for epoch in epochs:
        assert sorted(n for features, _ in epoch for n in features["count"]) == list(range(20))


def test_resume_reads_the_rest_of_the_epoch(table):
    dataset = csv_dataset(table, 3, label_name=["kind"], shuffle_seed=5)
    whole = [plain(batch) for batch, _ in dataset.batches(epoch=1)]
    assert [plain(batch) for batch, _ in dataset.batches(epoch=1, start=2)] == whole[2:]


def test_validation_split(table):
    training, validation = csv_dataset(table, 4, validation_split=0.25, subset="both", shuffle_seed=7)
    assert (training.num_samples, validation.num_samples) == (15, 5) and not validation.shuffle
    counts = [n for part in (training, validation) for batch in part for n in batch["count"].tolist()]
    assert sorted(counts) == list(range(20))
    alone = csv_dataset(table, 4, validation_split=0.25, subset="validation", shuffle_seed=7)
    assert [plain(batch) for batch in alone] == [plain(batch) for batch in validation]
    with pytest.raises(ValueError, match=r"needs a seed \(shuffle_seed=\)"):
        csv_dataset(table, 4, validation_split=0.25, subset="training")


def test_split_across_processes_shares_concatenate_to_the_global_batch(table):
    whole = list(csv_dataset(table, 7, label_name="kind", shuffle_seed=2).batches(0))
    shares = []
    for rank in range(2):
        dataset = csv_dataset(table, 7, label_name="kind", shuffle_seed=2)
        dataset.split_across(rank, 2)
        shares.append(list(dataset.batches(0)))
    for (batch, _), (first, weight0), (second, weight1) in zip(whole, *shares):
        assert torch.equal(batch[1], torch.cat([first[1], second[1]]))
        assert batch[0]["text"] == first[0]["text"] + second[0]["text"]
        assert weight0 * len(batch[1]) == len(first[1]) * 2 and weight1 * len(batch[1]) == len(second[1]) * 2


@pytest.mark.parametrize("text, arguments, error, message", [
    ("a,b\n1,2\n3\n", {}, ValueError, r"bad.csv, line 3: expected 2 fields \(a, b\), got 1"),
    ("a,b\n1,2\n3,4,5\n", {}, ValueError, r"line 3: expected 2 fields \(a, b\), got 3"),
    ("a,b\n1,2\nx,4\n", {"column_defaults": [float, 0]}, ValueError,
     r"bad.csv, line 3, column 'a': expected a number \(float32\), got 'x'"),
    ("a,b\n1,2\n1.5,4\n", {"column_defaults": [0, 0]}, ValueError,
     r"column 'a': expected an integer \(int64\), got '1.5'"),
    ("a,b\n1,2\n", {"label_name": "c"}, ValueError, r"label_name 'c' is not a column read from .*bad.csv: expected"),
    ("a,b\n1,2\n", {"select_columns": ["a", 0]}, ValueError, "select_columns must name each column it keeps once"),
    ("a,b\n1,2\n", {"label_name": "b", "select_columns": ["a"]}, ValueError, "label_name 'b' is not a column"),
    ("", {}, ValueError, r"bad.csv is empty: expected a header line"),
    ("a,b\n", {}, ValueError, "no rows to read"),
    ("a,a\n1,2\n", {}, ValueError, "column names must be unique"),
    ("a,b\n1,2\n", {"select_columns": ["a", 5]}, ValueError, "select_columns has 5, which is not a column"),
    ("a,b\n1,2\n", {"column_defaults": [0]}, ValueError, "column_defaults has 1 entries; expected one per column"),
    ("a,b\n1,2\n", {"column_defaults": [0, [1]]}, TypeError, r"column_defaults for 'b' is \[1\]: expected a default"),
    ("a,b\n1,2\n", {"header": False}, ValueError, "header=False needs column_names"),
    ('a,b\n"x"y,2\n', {}, ValueError, r"line 2: not valid CSV"),
])
def test_errors_name_what_was_expected_and_where(tmp_path, text, arguments, error, message):
    with pytest.raises(error, match=message):
        csv_dataset(write(tmp_path / "bad.csv", text), 2, **arguments)


def test_files_and_headers_that_do_not_fit(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no files match '.*nothing\*.csv'"):
        csv_dataset(str(tmp_path / "nothing*.csv"), 2)
    write(tmp_path / "one.csv", "a,b\n1,2\n")
    write(tmp_path / "two.csv", "a,c\n1,2\n")
    with pytest.raises(ValueError, match=r"two.csv: the header's columns are \['a', 'c'\], but .*one.csv's are"):
        csv_dataset(str(tmp_path / "*.csv"), 2)


def test_ignore_errors_skips_bad_rows_with_one_warning(tmp_path):
    path = write(tmp_path / "rows.csv", "a,b\n1,2\n3\nx,4\n5,6\n")
    with pytest.warns(UserWarning, match=r"skipped 2 malformed rows; the first: .*rows.csv, line 3: expected 2"):
        dataset = csv_dataset(path, 4, column_defaults=[int, int], ignore_errors=True, shuffle=False)
    assert plain(next(iter(dataset))) == {"a": [1, 5], "b": [2, 6]}


def linear_rule_table(tmp_path, rows=256, seed=0):
    """x1, x2 uniform in [-1, 1]; y = 3 x1 - 2 x2 + 0.5; kind = 1 when x1 > x2; a note column to drop."""
    generator = np.random.default_rng(seed)
    lines = ["x1,x2,note,y,kind"]
    for x1, x2 in generator.uniform(-1, 1, size=(rows, 2)):
        lines.append(f"{x1:.5f},{x2:.5f},row,{3 * x1 - 2 * x2 + 0.5:.5f},{int(x1 > x2)}")
    return write(tmp_path / f"linear{seed}.csv", "\n".join(lines) + "\n")


def test_fit_a_functional_model_on_named_columns(tmp_path):
    path = linear_rule_table(tmp_path)
    x1, x2 = ember.Input(shape=(), name="x1"), ember.Input(shape=(), name="x2")
    ember.seed(0)
    model = ember.Model(inputs=[x1, x2], outputs=layers.Dense(1)(ops.stack([x1, x2], axis=-1)))
    model.compile("adam", loss="mse", lr=0.05, precision="fp32")
    train, validation = csv_dataset(path, 32, label_name="y", select_columns=["x1", "x2", "y"],
                                    validation_split=0.25, subset="both", shuffle_seed=1)
    model.fit(train, validation_data=validation, epochs=30, verbose=0)
    assert model.evaluate(validation, verbose=0)["loss"] < 1e-3
    table = csv_dataset(path, 64, select_columns=["x1", "x2"], shuffle=False)
    predicted = model.predict(table)
    expected = 3 * table.columns["x1"] - 2 * table.columns["x2"] + 0.5
    assert torch.allclose(torch.as_tensor(predicted).reshape(-1), expected, atol=0.05)


def test_fit_a_model_taking_the_columns_as_keyword_arguments(tmp_path):
    class Classifier(ember.Model):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(2, 2)

        def forward(self, x1, x2):
            return self.linear(torch.stack([x1, x2], dim=-1))

    ember.seed(0)
    model = Classifier()
    model.compile("adam", loss="cross_entropy", metrics=["accuracy"], lr=0.1, precision="fp32")
    columns = ["x1", "x2", "kind"]
    model.fit(csv_dataset(linear_rule_table(tmp_path), 32, label_name="kind", select_columns=columns,
                          shuffle_seed=0), epochs=15, verbose=0)
    held_out = csv_dataset(linear_rule_table(tmp_path, rows=100, seed=1), 50, label_name="kind", select_columns=columns)
    assert model.evaluate(held_out, verbose=0)["accuracy"] >= 0.95


def test_several_label_columns_train_a_model_with_outputs_by_name(tmp_path):
    x1, x2 = ember.Input(shape=(), name="x1"), ember.Input(shape=(), name="x2")
    both = ops.stack([x1, x2], axis=-1)
    ember.seed(0)
    model = ember.Model(inputs=[x1, x2], outputs={"y": layers.Dense(1)(both), "kind": layers.Dense(2)(both)})
    model.compile("adam", loss={"y": "mse", "kind": "cross_entropy"}, lr=0.05, precision="fp32")
    table = csv_dataset(linear_rule_table(tmp_path), 32, label_name=["y", "kind"],
                        select_columns=["x1", "x2", "y", "kind"], shuffle_seed=0)
    model.fit(table, epochs=20, verbose=0)
    result = model.evaluate(table, verbose=0)
    assert result["y_loss"] < 0.01 and result["kind_loss"] < 0.3
