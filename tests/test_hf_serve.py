"""A fine-tuned Hugging Face classifier, exported with its tokenizer, answers raw strings from `ember serve`."""
import httpx
import numpy as np
import pytest
import torch

import ember
from ember.hf import text_classification_data
from testing.hf import sentiment_texts, tiny_bert, tiny_tokenizer

pytest.importorskip("onnxruntime")
pytest.importorskip("fastapi")


def test_fine_tuned_bert_serves_raw_text(tmp_path):
    from ember.hf.export import export_text_classifier
    from testing.serve import ServerProcess

    ember.seed(0)
    tokenizer = tiny_tokenizer()
    model = ember.wrap(tiny_bert(id2label={0: "negative", 1: "positive"}))
    texts, labels = sentiment_texts(320)
    model.compile(optimizer="adamw", lr=3e-3)
    model.fit(text_classification_data(tokenizer, texts, labels, model=model, batch_size=16, shuffle=True),
              epochs=2, verbose=0)
    export_text_classifier(model, tokenizer, tmp_path / "sentiment", max_length=16)

    requests = ["great movie", "the plot was awful and boring", "loved it, the best film"]
    with ServerProcess(tmp_path / "sentiment") as server:
        answer = httpx.post(f"{server.url}/v1/models/sentiment:predict", json={"instances": requests}, timeout=30)
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert [p["label"] for p in predictions] == ["positive", "negative", "positive"]

    batch = tokenizer(requests, padding=True, return_tensors="pt")
    model.eval()
    with torch.no_grad():
        expected = torch.softmax(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits, -1)
    np.testing.assert_allclose([p["probabilities"] for p in predictions], expected.numpy(), atol=1e-5)
