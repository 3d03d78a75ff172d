import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from ember.hf.export import export_text_classifier  # noqa: E402
from testing.hf import tiny_bert, tiny_tokenizer  # noqa: E402


def test_exported_folder_serves_raw_text_without_transformers(tmp_path):
    import onnxruntime as ort
    from tokenizers import Tokenizer

    torch.manual_seed(0)
    model, tokenizer = tiny_bert(id2label={0: "negative", 1: "positive"}).eval(), tiny_tokenizer()
    report = export_text_classifier(model, tokenizer, tmp_path / "sentiment", max_length=16)
    assert report.max_abs_diff < 1e-4 and not model.training
    folder = tmp_path / "sentiment"
    signature = json.loads((folder / "signature.json").read_text())
    assert signature["task"] == "text_classification" and signature["labels"] == ["negative", "positive"]
    assert signature["tokenizer"] == {"file": "tokenizer.json", "max_length": 16}
    assert signature["output_kind"] == "logits"
    assert [(i["name"], i["dtype"], i["shape"]) for i in signature["inputs"]] == [
        ("input_ids", "int64", [-1, -1]), ("attention_mask", "int64", [-1, -1])]

    # What a server does with the folder alone: tokenize (truncated, padded), run, read labels.
    texts = ["great movie", "the plot was not very good " * 5, "awful"]
    encodings = Tokenizer.from_file(str(folder / "tokenizer.json")).encode_batch(texts)
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    assert ids.shape == (3, 16)
    logits = ort.InferenceSession(str(folder / "model.onnx")).run(None, {"input_ids": ids, "attention_mask": mask})[0]

    reference = tokenizer(texts, padding=True, truncation=True, max_length=16, return_tensors="pt")
    np.testing.assert_array_equal(ids, reference["input_ids"].numpy())
    with torch.no_grad():
        expected = model(input_ids=reference["input_ids"], attention_mask=reference["attention_mask"]).logits
    np.testing.assert_allclose(logits, expected.numpy(), atol=1e-4)


def test_label_names_must_match_the_model(tmp_path):
    with pytest.raises(ValueError, match="label_names has 3 names but the model has num_labels=2"):
        export_text_classifier(tiny_bert(), tiny_tokenizer(), tmp_path, label_names=["a", "b", "c"])
    assert not (tmp_path / "model.onnx").exists()
