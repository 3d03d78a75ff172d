import csv

from ember.callbacks import CSVLogger


def test_writes_one_row_per_epoch_and_appends(toy, tmp_path):
    x, y, build = toy
    path = tmp_path / "log.csv"
    build().fit(x, y, epochs=3, verbose=0, validation_data=(x, y), callbacks=[CSVLogger(path)])
    rows = list(csv.DictReader(path.open()))
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]
    assert set(rows[0]) == {"epoch", "loss", "accuracy", "lr", "val_loss", "val_accuracy"}
    build().fit(x, y, epochs=1, verbose=0, validation_data=(x, y), callbacks=[CSVLogger(path, append=True)])
    assert len(list(csv.DictReader(path.open()))) == 4
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # atomic writes leave nothing
