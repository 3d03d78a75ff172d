"""ember: Keras-grade define / train / deploy / serve for any PyTorch model."""
from ember import callbacks, config, distributed, layers
from ember.define import Model, Sequential, Summary, wrap
from ember.deploy.saving import load_model as load
from ember.keras import from_keras, load_keras_weights
from ember.seeding import seed

__version__ = "0.1.0"
__all__ = ["Model", "Sequential", "Summary", "callbacks", "config", "distributed", "from_keras", "layers",
           "load", "load_keras_weights", "seed", "wrap"]
