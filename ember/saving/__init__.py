"""Model files: one `ember.container` zip of JSON and safetensors, written and read without pickle.

Below `define` and `keras` (docs/architecture.md, "Package layers"): models register themselves in
`registry.py` and this package imports none of them. Read files with `ember.load`, which registers
ember's own models first.
"""
from ember.saving.model_file import ModelFileError, load_model, load_weights, save_model, save_weights

__all__ = ["ModelFileError", "load_model", "load_weights", "save_model", "save_weights"]
