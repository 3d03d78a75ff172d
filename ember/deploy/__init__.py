"""Saving, loading and exporting models."""
from ember.deploy.saving import ModelFileError, load_model, load_weights, save_model, save_weights


def export(model, path, format="onnx", example=None, **options):
    from ember.deploy.export import export as _export

    return _export(model, path, format=format, example=example, **options)


__all__ = ["ModelFileError", "export", "load_model", "load_weights", "save_model", "save_weights"]
