import shutil

import pytest

from ember.serve.text import TextClassifierIO
from ember.signature import load_signature, write_signature
from testing.serve import exported


@pytest.mark.parametrize("tokenizer, message", [
    ({"file": "../tokenizer.json"}, "expected \"file\": the name of a file in"),
    ({"file": "/etc/hostname"}, "got '/etc/hostname'"),
    ({"file": 7}, "got 7"),
    ({"file": "tokenizer.json", "max_length": "16"}, "expected \"max_length\": an integer >= 1, got '16'"),
    ({"file": "tokenizer.json", "max_length": 0}, "an integer >= 1, got 0"),
])
def test_tokenizer_settings_from_signature_json_are_checked(tmp_path, tokenizer, message):
    shutil.copytree(exported("text"), tmp_path / "text")
    signature = load_signature(tmp_path / "text")
    write_signature(tmp_path / "text", [{"name": s.name, "dtype": s.dtype.name, "shape": list(s.shape)}
                                        for s in signature.inputs],
                    [{"name": "logits", "dtype": "float32", "shape": [-1, 2]}], tokenizer=tokenizer)
    with pytest.raises(ValueError, match=message):
        TextClassifierIO(tmp_path / "text", load_signature(tmp_path / "text"))
