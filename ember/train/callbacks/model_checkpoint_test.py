import numpy as np

import ember
from ember.callbacks import ModelCheckpoint
from ember.train.callbacks.early_stopping_test import Feed


def test_save_best_only_writes_when_improving_and_loads_back(toy, tmp_path):
    x, y, build = toy
    path = tmp_path / "best_model.keras"
    saved = []

    class Spy(ModelCheckpoint):
        def on_epoch_end(self, epoch, logs=None):
            before = path.stat().st_mtime_ns if path.exists() else None
            super().on_epoch_end(epoch, logs)
            if path.exists() and path.stat().st_mtime_ns != before:
                saved.append(epoch)

    model = build()
    model.fit(x, y, epochs=4, verbose=0, validation_data=(x, y),
              callbacks=[Feed([0.5, 0.7, 0.4, 0.45]), Spy(path, save_best_only=True)])
    assert saved == [0, 2]
    restored = ember.load(path)
    assert restored.predict(x).shape == (64, 2)


def test_formatted_paths_every_epoch_and_weights_only(toy, tmp_path):
    x, y, build = toy
    model = build()
    model.fit(x, y, epochs=2, verbose=0, validation_data=(x, y),
              callbacks=[ModelCheckpoint(str(tmp_path / "w-{epoch:02d}-{val_loss:.2f}.safetensors"),
                                         save_weights_only=True)])
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and files[0].startswith("w-01-") and files[1].startswith("w-02-")
    fresh = build()
    fresh.load_weights(tmp_path / files[1])
    np.testing.assert_allclose(fresh.predict(x), model.predict(x))
