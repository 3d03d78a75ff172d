import warnings

import pytest
import torch

import ember
from ember.hf import read_text_csv, text_classification_data
from testing.hf import sentiment_texts, tiny_bert, tiny_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def test_batches_are_padded_to_their_longest_text(tokenizer):
    texts = ["great", "the movie was not very good", "bad film"]
    data = text_classification_data(tokenizer, texts, [1, 0, 0], batch_size=2)
    first, second = list(data)
    assert first["input_ids"].shape == (2, 8)  # [CLS] + 6 words + [SEP]
    assert first["attention_mask"].sum(1).tolist() == [3, 8]
    assert first["input_ids"][0, 3:].tolist() == [tokenizer.pad_token_id] * 5
    assert second["input_ids"].shape == (1, 4)
    assert first["labels"].tolist() == [1, 0] and first["labels"].dtype == torch.int64
    assert data.padding_stats() == (15, 20)


def test_shuffled_order_follows_ember_seed_and_changes_every_epoch(tokenizer):
    texts, labels = sentiment_texts(300)

    def epochs(seed):
        ember.seed(seed)
        data = text_classification_data(tokenizer, texts, labels, batch_size=16, shuffle=True)
        order = []
        for epoch in range(2):
            data.sampler.set_epoch(epoch)
            order.append([b["input_ids"].tolist() for b in data])
        return order

    first, again, other = epochs(0), epochs(0), epochs(1)
    assert first == again and first != other and first[0] != first[1]


def test_length_grouping_cuts_padding(tokenizer):
    texts, labels = sentiment_texts(2000)
    ember.seed(0)
    grouped = text_classification_data(tokenizer, texts, labels, batch_size=32, shuffle=True)
    plain = text_classification_data(tokenizer, texts, labels, batch_size=32, shuffle=True, group_by_length=False)
    real, padded_grouped = grouped.padding_stats()
    _, padded_plain = plain.padding_stats()
    assert padded_grouped < 1.1 * real < padded_plain


def test_names_as_labels_through_the_models_id2label(tokenizer):
    model = tiny_bert(id2label={0: "negative", 1: "positive"})
    data = text_classification_data(tokenizer, ["great", "awful"], ["positive", "negative"], model=model)
    assert next(iter(data))["labels"].tolist() == [1, 0]
    with pytest.raises(ValueError, match=r"labels\[1\] is 'neutral', which is not one of \['negative', 'positive'\]"):
        text_classification_data(tokenizer, ["great", "fine"], ["positive", "neutral"], model=model)


def test_labels_outside_num_labels_are_refused(tokenizer):
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\) \(num_labels=2\); labels\[2\] is 2"):
        text_classification_data(tokenizer, ["a", "b", "c"], [0, 1, 2], model=tiny_bert(num_labels=2))


def test_tokenizer_from_another_checkpoint_is_refused(tokenizer):
    with pytest.raises(ValueError, match=r"the tokenizer has 34 tokens but the model .* has 20 embedding rows"):
        text_classification_data(tokenizer, ["great"], [1], model=tiny_bert(vocab_size=20))


def test_long_texts_are_truncated_with_a_warning_or_refused(tokenizer):
    texts = ["great " * 40, "bad"]
    with pytest.warns(UserWarning, match=r"1 of 2 texts are longer than max_length=16 tokens \(e.g. texts\[0\]\)"):
        data = text_classification_data(tokenizer, texts, [1, 0], max_length=16)
    assert data.lengths.tolist() == [16, 3]
    with pytest.raises(ValueError, match="longer than max_length=16 .* pass truncation=True"):
        text_classification_data(tokenizer, texts, [1, 0], max_length=16, truncation=False)
    with pytest.raises(ValueError, match="max_length=64 is longer than the model's 32 position embeddings"):
        text_classification_data(tokenizer, texts, [1, 0], max_length=64, model=tiny_bert())


def test_texts_and_labels_must_match(tokenizer):
    with pytest.raises(ValueError, match="got 2 texts but 1 labels"):
        text_classification_data(tokenizer, ["a", "b"], [1])
    with pytest.raises(TypeError, match=r"texts\[1\] is a int"):
        text_classification_data(tokenizer, ["a", 3], [1, 0])


def test_csv_with_invalid_utf8_is_read_with_replacement(tmp_path, tokenizer):
    path = tmp_path / "reviews.csv"
    path.write_bytes(b'label,text\n1,great movie\n0,"bad \xff film,\nreally"\n1,good \xe9\n')
    with pytest.warns(UnicodeWarning, match="2 of 5 lines are not valid UTF-8"):
        texts, labels = read_text_csv(path)
    assert texts == ["great movie", "bad \ufffd film,\nreally", "good \ufffd"] and labels == ["1", "0", "1"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnicodeWarning)
        data = text_classification_data(tokenizer, path, label_names=["0", "1"])
    assert data.labels.tolist() == [1, 0, 1]
    with pytest.warns(UnicodeWarning), pytest.raises(ValueError, match=r"no column 'sentiment'; the header has"):
        read_text_csv(path, label_column="sentiment")


def test_datasets_dataset_columns(tokenizer):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"sentence": ["great", "awful film"], "label": [1, 0]})
    data = text_classification_data(tokenizer, ds, text_column="sentence")
    assert data.labels.tolist() == [1, 0] and data.lengths.tolist() == [3, 4]



class _Interrupt(Exception):
    pass


class _InterruptAfter(ember.callbacks.Callback):
    def __init__(self, batch):
        self.batch = batch

    def on_train_batch_end(self, batch, logs=None):
        if batch == self.batch:
            raise _Interrupt


def test_resume_restores_the_shuffle_seed_of_text_batches(tmp_path, tokenizer):
    texts, labels = sentiment_texts(96, seed=3)

    def run(seed, backup, interrupt=()):
        ember.seed(seed)  # a resumed process may seed differently: the backup's data seed must win
        data = text_classification_data(tokenizer, texts, labels, batch_size=16, shuffle=True)
        model = ember.wrap(tiny_bert())
        model.compile("adamw", lr=1e-3)
        model.fit(data, epochs=2, verbose=0, callbacks=[*interrupt, ember.callbacks.BackupAndRestore(backup, save_freq=2)])
        return model

    reference = run(0, tmp_path / "reference")
    with pytest.raises(_Interrupt):
        run(0, tmp_path / "backup", interrupt=[_InterruptAfter(3)])
    resumed = run(99, tmp_path / "backup")
    for (name, expected), actual in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(expected, actual), name
