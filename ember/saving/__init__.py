"""Model files: one `ember.container` zip of JSON and safetensors, written and read without pickle."""
from ember.saving.model_file import ModelFileError, load_model, load_weights, save_model, save_weights

__all__ = ["ModelFileError", "load_model", "load_weights", "save_model", "save_weights"]
