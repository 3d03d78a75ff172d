"""A tiny randomly initialised BERT classifier and its tokenizer, built offline in a second.

For tests of ember's Hugging Face support (no model hub, no download): a real
`BertForSequenceClassification` and a real fast WordPiece tokenizer, only small.
"""
WORDS = ("great good fine loved wonderful best fun bad awful boring worst hated dull poor "
         "the a movie film plot acting was is not very so it this and but").split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
POSITIVE, NEGATIVE = WORDS[:7], WORDS[7:14]


def tiny_tokenizer():
    from transformers import BertTokenizer

    return BertTokenizer(vocab={w: i for i, w in enumerate(SPECIAL + WORDS)}, model_max_length=32)


def tiny_bert(num_labels=2, vocab_size=None, max_position_embeddings=32, id2label=None):
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=vocab_size or len(SPECIAL) + len(WORDS), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=max_position_embeddings, num_labels=num_labels,
                        id2label=id2label, label2id={v: k for k, v in id2label.items()} if id2label else None)
    return BertForSequenceClassification(config)


def sentiment_texts(n, seed=0):
    """n short reviews, label 1 when built from positive words, 0 from negative ones; lengths vary."""
    import numpy as np

    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(n):
        label = int(rng.integers(2))
        words = list(rng.choice(POSITIVE if label else NEGATIVE, size=int(rng.integers(1, 4))))
        filler = list(rng.choice(WORDS[14:], size=int(rng.integers(1, 12))))
        texts.append(" ".join(rng.permutation(words + filler)))
        labels.append(label)
    return texts, labels
