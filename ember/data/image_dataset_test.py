import os
import warnings

import numpy as np
import pytest
import torch

from ember.data import image_dataset_from_directory
from testing.image_folders import make_image_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = make_image_folder(tmp_path_factory.mktemp("images"), classes=("b_dogs", "a_cats", "c_birds"),
                             per_class=9, max_side=96)
    nested = root / "a_cats" / "indoor"
    nested.mkdir()
    make_image_folder(tmp_path_factory.mktemp("more"), classes=("x",), per_class=2)
    for n, source in enumerate(sorted((root / "b_dogs").iterdir())[:2]):
        (nested / f"n{n}{source.suffix}").write_bytes(source.read_bytes())
    (root / "b_dogs" / "readme.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    return root


def _keras_index(folder, **kwargs):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    from keras.src.utils import dataset_utils

    return dataset_utils.index_directory(str(folder), formats=(".bmp", ".gif", ".jpeg", ".jpg", ".png"),
                                         verbose=False, **kwargs)


@pytest.mark.parametrize("shuffle,class_names", [(True, None), (False, None), (True, ["c_birds", "a_cats"])])
def test_files_classes_and_labels_are_keras_own(folder, shuffle, class_names):
    paths, labels, names = _keras_index(folder, labels="inferred", class_names=class_names, shuffle=shuffle, seed=3)
    dataset = image_dataset_from_directory(folder, image_size=(8, 8), shuffle=shuffle, seed=3, verbose=False,
                                           class_names=class_names, workers=0)
    assert dataset.class_names == names and dataset.file_paths == paths
    assert torch.equal(dataset.labels, torch.from_numpy(np.asarray(labels)).int())
    assert any("indoor" in p for p in paths) and not any(p.endswith(".txt") for p in paths)


def test_validation_split_matches_keras_and_both_returns_the_pair(folder):
    paths, _, _ = _keras_index(folder, labels="inferred", shuffle=True, seed=5)
    cut = len(paths) - int(0.3 * len(paths))
    training, validation = image_dataset_from_directory(folder, image_size=(8, 8), validation_split=0.3,
                                                        subset="both", seed=5, verbose=False, workers=0)
    alone = image_dataset_from_directory(folder, image_size=(8, 8), validation_split=0.3, subset="validation",
                                         seed=5, verbose=False, workers=0)
    assert training.file_paths == paths[:cut] and validation.file_paths == paths[cut:] == alone.file_paths
    assert training.shuffle and not validation.shuffle
    with pytest.raises(ValueError, match="needs a seed"):
        image_dataset_from_directory(folder, validation_split=0.3, subset="training")
    with pytest.raises(ValueError, match="validation_split and subset go together"):
        image_dataset_from_directory(folder, subset="training", seed=1)


@pytest.mark.parametrize("label_mode,shape,dtype", [("int", (4,), torch.int32), ("categorical", (4, 3), torch.float32),
                                                    (None, None, None)])
def test_label_modes(folder, label_mode, shape, dtype):
    dataset = image_dataset_from_directory(folder, image_size=(8, 8), batch_size=4, label_mode=label_mode,
                                           verbose=False, workers=0)
    batch = next(iter(dataset))
    if label_mode is None:
        assert isinstance(batch, torch.Tensor)
    else:
        assert batch[1].shape == shape and batch[1].dtype == dtype
    if label_mode == "categorical":
        assert torch.equal(batch[1].sum(1), torch.ones(4))


def test_binary_labels_need_two_classes(folder, tmp_path):
    with pytest.raises(ValueError, match="exactly 2 classes"):
        image_dataset_from_directory(folder, label_mode="binary", verbose=False)
    two = make_image_folder(tmp_path, per_class=3)
    _, labels = next(iter(image_dataset_from_directory(two, label_mode="binary", image_size=(8, 8), verbose=False,
                                                       workers=0)))
    assert labels.shape == (6, 1) and labels.dtype == torch.float32 and set(labels.flatten().tolist()) == {0.0, 1.0}


@pytest.mark.parametrize("color_mode,channels", [("grayscale", 1), ("rgb", 3), ("rgba", 4)])
@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
def test_color_modes_and_layouts(folder, color_mode, channels, data_format):
    dataset = image_dataset_from_directory(folder, image_size=(10, 12), batch_size=5, color_mode=color_mode,
                                           data_format=data_format, verbose=False, workers=0)
    images, _ = next(iter(dataset))
    expected = (5, channels, 10, 12) if data_format == "channels_first" else (5, 10, 12, channels)
    assert images.shape == expected and images.dtype == torch.uint8 and len(dataset) == -(-29 // 5)


@pytest.mark.parametrize("option", ["crop_to_aspect_ratio", "pad_to_aspect_ratio"])
def test_crop_and_pad_to_aspect_ratio_keep_the_size(folder, option):
    images, _ = next(iter(image_dataset_from_directory(folder, image_size=(16, 40), verbose=False, workers=0,
                                                       **{option: True})))
    assert images.shape[1:] == (3, 16, 40)
    if option == "pad_to_aspect_ratio":  # photos are wider than tall only so much: columns at the sides stay black
        assert (images[..., 0] == 0).all() or (images[:, :, 0] == 0).all()


def test_workers_and_in_process_decoding_give_the_same_batches(folder):
    def batches(workers):
        dataset = image_dataset_from_directory(folder, image_size=(8, 8), batch_size=7, seed=1, verbose=False,
                                               workers=workers)
        return list(dataset)
    for (a, la), (b, lb) in zip(batches(0), batches(2)):
        assert torch.equal(a, b) and torch.equal(la, lb)


def test_each_iteration_is_the_next_epochs_order_and_covers_every_file(folder):
    dataset = image_dataset_from_directory(folder, image_size=(8, 8), batch_size=30, seed=2, verbose=False, workers=0)
    first, second = next(iter(dataset)), next(iter(dataset))
    assert not torch.equal(first[1], second[1]) or not torch.equal(first[0], second[0])
    assert sorted(first[1].tolist()) == sorted(second[1].tolist()) == sorted(dataset.labels.tolist())


def test_undecodable_files_are_skipped_by_name_or_raise(tmp_path):
    root = make_image_folder(tmp_path / "images", per_class=4)
    (root / "cats" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    (root / "dogs" / "empty.png").write_bytes(b"")
    dataset = image_dataset_from_directory(root, image_size=(8, 8), batch_size=4, verbose=False, workers=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        count = sum(len(labels) for _, labels in dataset)
    assert count == 8
    assert sorted(str(w.message).split()[1].rstrip(":") for w in caught) == sorted(
        [str(root / "cats" / "broken.jpg"), str(root / "dogs" / "empty.png")])
    strict = image_dataset_from_directory(root, image_size=(8, 8), verbose=False, workers=2, on_error="raise")
    with pytest.raises(ValueError, match="cannot be read as an image"):
        list(strict)


@pytest.mark.parametrize("where", ["memory", "disk"])
def test_cache_serves_later_epochs_without_decoding(folder, tmp_path, monkeypatch, where):
    cache = True if where == "memory" else str(tmp_path / "decoded")
    dataset = image_dataset_from_directory(folder, image_size=(8, 8), batch_size=8, seed=4, verbose=False,
                                           workers=2, cache=cache)
    first = list(dataset.batches(0))
    import ember.data.image_dataset as module
    monkeypatch.setattr(module, "load_image", lambda *a, **k: pytest.fail("decoded again"))
    again = list(dataset.batches(0))
    assert all(torch.equal(a[0][0], b[0][0]) and torch.equal(a[0][1], b[0][1]) for a, b in zip(first, again))
    if where == "disk":  # a new dataset (a new process) over the same folder and options reuses the file
        reopened = image_dataset_from_directory(folder, image_size=(8, 8), batch_size=8, seed=4, verbose=False,
                                                workers=0, cache=cache)
        assert torch.equal(next(reopened.batches(0))[0][0], first[0][0][0])
        monkeypatch.undo()
        resized = image_dataset_from_directory(folder, image_size=(9, 9), batch_size=8, seed=4, verbose=False,
                                               workers=0, cache=cache)
        assert next(resized.batches(0))[0][0].shape[-1] == 9


def test_each_process_reads_its_share_of_every_global_batch(folder):
    def dataset():
        return image_dataset_from_directory(folder, image_size=(8, 8), batch_size=8, seed=6, verbose=False,
                                            workers=0)
    whole = list(dataset().batches(1))
    shares = []
    for rank in range(3):
        part = dataset()
        part.split_across(rank, 3)
        shares.append(list(part.batches(1)))
    for step, ((images, labels), weight) in enumerate(whole):
        assert weight == 1.0
        assert torch.equal(torch.cat([s[step][0][0] for s in shares]), images)
        assert sum(s[step][1] for s in shares) == pytest.approx(3.0)


def test_fit_evaluate_and_predict_take_the_dataset(folder):
    import ember
    from ember import layers

    ember.seed(0)
    training = image_dataset_from_directory(folder, image_size=(16, 16), batch_size=8, seed=1, verbose=False,
                                            workers=0)
    model = ember.Sequential([layers.Rescaling(1 / 255, input_shape=(3, 16, 16)), layers.Conv2D(4, 3),
                              layers.GlobalAveragePooling2D(), layers.Dense(3)])
    model.compile("adam", loss="cross_entropy", metrics=["accuracy"], precision="fp32")
    history = model.fit(training, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    assert set(model.evaluate(training, verbose=0)) == {"loss", "accuracy"}
    assert model.predict(training, verbose=0).shape == (len(training.file_paths), 3)


def test_bad_arguments_say_what_was_expected(folder):
    for kwargs, message in [({"color_mode": "cmyk"}, "color_mode must be one of"),
                            ({"image_size": (0, 4)}, "image_size must be"),
                            ({"interpolation": "gaussian"}, "interpolation must be one of"),
                            ({"label_mode": "sparse"}, "label_mode must be"),
                            ({"labels": "folders"}, "labels must be"),
                            ({"crop_to_aspect_ratio": True, "pad_to_aspect_ratio": True}, "not both"),
                            ({"on_error": "ignore"}, "on_error must be")]:
        with pytest.raises(ValueError, match=message):
            image_dataset_from_directory(folder, verbose=False, **kwargs)
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        image_dataset_from_directory(folder / "missing", verbose=False)


def test_batch_size_none_yields_single_samples_as_keras(folder):
    dataset = image_dataset_from_directory(folder, image_size=(8, 8), batch_size=None, label_mode="categorical",
                                           verbose=False, workers=0)
    samples = list(dataset)
    image, label = samples[0]
    assert len(samples) == len(dataset.file_paths) == len(dataset)
    assert image.shape == (3, 8, 8) and label.shape == (3,)
