import os

import numpy as np
import pytest
import torch

from ember.data import text_dataset_from_directory


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("texts")
    for label, words in (("neg", "awful dull"), ("pos", "great fun")):
        (root / label / "more").mkdir(parents=True)
        for n in range(7):
            (root / label / f"{n}.txt").write_text(f"{words} review number {n} ✓", encoding="utf-8")
        (root / label / "more" / "extra.txt").write_text(f"{words} nested")
        (root / label / "image.png").write_bytes(b"not text")
    return root


def test_files_labels_and_split_are_keras_own(folder):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    from keras.src.utils import dataset_utils

    paths, labels, names = dataset_utils.index_directory(str(folder), "inferred", formats=(".txt",), shuffle=True,
                                                         seed=9, verbose=False)
    training, validation = text_dataset_from_directory(folder, seed=9, validation_split=0.25, subset="both",
                                                       verbose=False)
    cut = len(paths) - int(0.25 * len(paths))
    assert training.class_names == names == ["neg", "pos"]
    assert training.file_paths == paths[:cut] and validation.file_paths == paths[cut:]
    assert torch.equal(torch.cat([training.labels, validation.labels]), torch.from_numpy(np.asarray(labels)).int())


def test_batches_are_texts_and_labels_truncated_to_max_length(folder):
    dataset = text_dataset_from_directory(folder, batch_size=5, max_length=9, label_mode="binary", shuffle=False,
                                          verbose=False)
    texts, labels = next(iter(dataset))
    assert texts == ["awful dul"] * 5 and labels.shape == (5, 1) and len(dataset) == 4
    full = next(iter(text_dataset_from_directory(folder, batch_size=2, shuffle=False, label_mode=None,
                                                 verbose=False)))
    assert full == ["awful dull review number 0 ✓", "awful dull review number 1 ✓"]


def test_fit_takes_a_text_dataset(folder):
    import ember

    class BagOfWords(ember.Model):
        takes_structured_input = True

        def __init__(self):
            super().__init__()
            self.vocabulary = {w: i for i, w in enumerate("awful dull great fun nested review".split())}
            self.linear = torch.nn.Linear(len(self.vocabulary), 2)

        def forward(self, texts):
            counts = torch.zeros(len(texts), len(self.vocabulary))
            for row, text in enumerate(texts):
                for word in text.split():
                    if word in self.vocabulary:
                        counts[row, self.vocabulary[word]] += 1
            return self.linear(counts)

    ember.seed(0)
    model = BagOfWords()
    model.compile("adam", loss="cross_entropy", metrics=["accuracy"], lr=0.1, precision="fp32")
    model.fit(text_dataset_from_directory(folder, batch_size=4, seed=1, verbose=False), epochs=8, verbose=0)
    assert model.evaluate(text_dataset_from_directory(folder, verbose=False), verbose=0)["accuracy"] == 1.0


def test_bad_max_length(folder):
    with pytest.raises(ValueError, match="max_length must be a positive integer"):
        text_dataset_from_directory(folder, max_length=0)


def test_batch_size_none_yields_single_texts(folder):
    text, label = next(iter(text_dataset_from_directory(folder, batch_size=None, shuffle=False, verbose=False)))
    assert text == "awful dull review number 0 ✓" and label.shape == ()
