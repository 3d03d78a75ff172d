"""Export a Hugging Face sequence classifier so it serves raw text: ONNX + tokenizer + labels.

The folder follows docs/export_contract.md: `model.onnx` (written by ember's generic ONNX
exporter) takes `input_ids` and `attention_mask` (int64, [batch, sequence], both dynamic)
and returns the logits; `tokenizer.json` is the model's fast tokenizer with truncation to
`max_length` and padding to the longest text switched on, so `Tokenizer.from_file(...)
.encode_batch(texts)` alone gives the model's inputs; `signature.json` names the task,
the labels (index = class id) and the tokenizer.
"""
import torch
from torch import nn

from ember.hf.checks import check_max_length, check_tokenizer_matches_model, default_max_length

TOKENIZER_FILE = "tokenizer.json"
# Example texts of different lengths: the exporter needs >= 2 rows and >= 2 tokens so that
# neither dimension is specialised to a constant.
EXAMPLE_TEXTS = ["a great movie, I loved it", "the plot was dull", "not bad"]


class SequenceClassifierLogits(nn.Module):
    """`(input_ids, attention_mask) -> logits`: the plain-tensor forward the exporters capture."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def export_text_classifier(model, tokenizer, path, *, max_length=None, label_names=None, format="onnx", **options):
    """Write model.onnx, tokenizer.json and signature.json into folder `path`; returns the ExportReport
    (the ONNX model's difference from eager PyTorch and both latencies).

    format: "onnx" (what `ember serve` runs), or a list that adds "web": a browser bundle that tokenizes
    raw text in JavaScript (BERT WordPiece tokenizers).
    label_names: class names, index = class id (default: the model's `config.id2label`).
    max_length: the longest token sequence the server feeds (default: the tokenizer's limit, capped by
    the model's position embeddings). `options` (e.g. `held_out=`) go to `ember.deploy.export.export`,
    which stages every file and moves them in only when all succeeded.
    """
    from ember.deploy.export import export

    if not getattr(tokenizer, "is_fast", False):
        raise TypeError(f"{type(tokenizer).__name__} is a slow (Python) tokenizer, which has no tokenizer.json: "
                        "load the fast one (AutoTokenizer.from_pretrained(path))")
    if tokenizer.pad_token_id is None:
        raise ValueError(f"the tokenizer {type(tokenizer).__name__} has no pad token: set tokenizer.pad_token "
                         "(e.g. to tokenizer.eos_token) so the server can batch texts of different lengths")
    check_tokenizer_matches_model(tokenizer, model)
    config = getattr(model, "config", None)
    max_length = default_max_length(tokenizer, config) if max_length is None else int(max_length)
    check_max_length(max_length, config)
    labels = _label_names(label_names, config)

    example = tokenizer(EXAMPLE_TEXTS, padding=True, truncation=True, max_length=max_length, return_tensors="pt",
                        return_token_type_ids=False)
    tokenizer_json = serving_tokenizer(tokenizer, max_length).to_str().encode()
    logits = SequenceClassifierLogits(model).train(model.training)  # export restores this mode afterwards
    return export(logits, path, format=format,
                  example=(example["input_ids"].to(torch.int64), example["attention_mask"].to(torch.int64)),
                  signature={"task": "text_classification", "labels": labels, "output_kind": "logits",
                             "tokenizer": {"file": TOKENIZER_FILE, "max_length": max_length}},
                  extra_files={TOKENIZER_FILE: tokenizer_json}, **options)


def serving_tokenizer(tokenizer, max_length):
    """A copy of the fast tokenizer that truncates to max_length and pads each batch to its longest text."""
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.enable_truncation(max_length)
    backend.enable_padding(pad_id=tokenizer.pad_token_id, pad_token=tokenizer.pad_token)
    return backend


def _label_names(label_names, config):
    num_labels = getattr(config, "num_labels", None)
    if label_names is None:
        if config is None:
            raise ValueError("the model has no config.id2label: pass label_names=[...] (index = class id)")
        return [str(config.id2label[i]) for i in range(num_labels)]
    if num_labels is not None and len(label_names) != num_labels:
        raise ValueError(f"label_names has {len(label_names)} names but the model has num_labels={num_labels}")
    return [str(name) for name in label_names]
