"""Keras models in ember: `from_keras` reads `.keras` and `.h5` files without TensorFlow or Keras."""
from ember.keras.convert import UnsupportedKerasLayersError, from_keras
from ember.keras.files import is_keras_file
from ember.keras.weights import load_keras_weights

__all__ = ["UnsupportedKerasLayersError", "from_keras", "is_keras_file", "load_keras_weights"]
