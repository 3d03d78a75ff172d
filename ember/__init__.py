"""ember: Keras-grade define / train / deploy / serve for any PyTorch model.

Names load on first use: `ember serve` and `ember launch` start without importing torch's
training stack (seconds, and hundreds of MB a server does not need for ONNX models).
"""
import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "Model": ("ember.define", "Model"), "Sequential": ("ember.define", "Sequential"),
    "Summary": ("ember.define", "Summary"), "wrap": ("ember.define", "wrap"),
    "load": ("ember.loading", "load"),
    "from_keras": ("ember.keras", "from_keras"), "load_keras_weights": ("ember.keras", "load_keras_weights"),
    "seed": ("ember.seeding", "seed"), "Input": ("ember.define", "Input"),
}
_SUBPACKAGES = ("callbacks", "config", "data", "distributed", "layers", "ops", "regularizers")
__all__ = sorted([*_EXPORTS, *_SUBPACKAGES])


def __getattr__(name):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"ember.{name}")
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ember' has no attribute {name!r}")
    module, attribute = _EXPORTS[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__():
    return sorted({*globals(), *__all__} - {"importlib"})
