"""Raw strings in, labels and probabilities out, for text classifiers exported with their tokenizer."""
from pathlib import Path

import numpy as np

from ember.untrusted import is_int, short_repr


class TextClassifierIO:
    """Tokenizes a request's strings into input_ids/attention_mask and turns outputs into labels."""

    def __init__(self, folder: Path, signature):
        from tokenizers import Tokenizer

        settings = signature.tokenizer
        file, max_length = settings.get("file"), settings.get("max_length", 512)
        # The file is one beside signature.json: a signature may not point the server at other files.
        if not isinstance(file, str) or Path(file).name != file or file in ("", ".", ".."):
            raise ValueError(f"{folder}/signature.json: \"tokenizer\": expected \"file\": the name of a file in "
                             f"{folder}, got {short_repr(file)}")
        if not is_int(max_length) or max_length < 1:
            raise ValueError(f"{folder}/signature.json: \"tokenizer\": expected \"max_length\": an integer >= 1, "
                             f"got {short_repr(max_length)}")
        self._tokenizer = Tokenizer.from_file(str(Path(folder) / file))
        self._tokenizer.enable_truncation(max_length)
        if self._tokenizer.padding is None:  # keep the file's pad id (not 0 for e.g. RoBERTa)
            self._tokenizer.enable_padding()  # to the longest string of the request
        self._input_names = signature.input_names
        unknown = set(self._input_names) - {"input_ids", "attention_mask", "token_type_ids"}
        if unknown:
            raise ValueError(f"{folder}: a tokenizer feeds input_ids, attention_mask and token_type_ids, "
                             f"but the model also takes {sorted(unknown)}")
        self._output = signature.output_names[0]
        self._labels = np.array(signature.labels or [str(i) for i in range(signature.outputs[0].shape[-1])],
                                dtype=object)
        self._softmax = signature.output_kind != "probabilities"

    def encode(self, texts: list) -> dict:
        encodings = self._tokenizer.encode_batch(texts)
        arrays = {"input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
                  "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
                  "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64)}
        return {name: arrays[name] for name in self._input_names}

    def decode(self, outputs: dict) -> dict:
        scores = outputs[self._output].astype(np.float32, copy=False)
        if self._softmax:
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            scores /= scores.sum(axis=-1, keepdims=True)
        return {"label": self._labels[scores.argmax(axis=-1)], "probabilities": scores}
