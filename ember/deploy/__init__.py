"""Saving, loading and exporting models."""
from ember.deploy.saving import ModelFileError, load_model, load_weights, save_model, save_weights
# Imported eagerly so that `ember.deploy.export` names the function, not its module of the same name.
from ember.deploy.export import export  # noqa: E402  (after saving: export does not depend on it)

__all__ = ["ModelFileError", "export", "load_model", "load_weights", "save_model", "save_weights"]
