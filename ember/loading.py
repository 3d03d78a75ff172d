"""`ember.load`: every model file ember reads, ember's own format or Keras'.

It sits above `define` and `keras` (docs/architecture.md) so that, before a file is read, the
model classes ember defines are registered with `ember.saving`: what gets imported is fixed here,
never chosen by the file (docs/security.md).
"""
import ember.define  # noqa: F401  (registers ember.Model's subclasses and Sequential's config kind)
from ember.keras import from_keras, is_keras_file  # importing it registers KerasGraph, converted functional models
from ember.saving import load_model


def load(path, compile=True, custom_objects=None):
    """Rebuild a model saved with `model.save()`: weights, architecture, compile configuration.
    Keras `.keras` / `.h5` files (recognised by content) go through `ember.from_keras`.

    custom_objects: model classes the file may name besides the `ember.Model` subclasses already
    defined in this process: a dict {name or "module.QualName": class} or a list of classes.
    """
    if is_keras_file(path):
        return from_keras(path)
    return load_model(path, compile=compile, custom_objects=custom_objects)
