"""`ember.Sequential`: a stack of layers whose sizes are inferred from one input shape."""
from torch import nn

from ember.define.layers.base import Layer, default_name
from ember.define.masking import call_with_mask
from ember.define.model import Model
from ember.define.shapes import infer_output_shape
from ember.define.symbolic import SymbolicTensor
from ember.saving.registry import register_config_class


class Sequential(Model):
    """Keras' Sequential as a plain `nn.Module`.

    The input shape (no batch axis) comes from an `ember.Input(...)` given first or from the
    first layer's `input_shape=`; every later size is inferred and parameters exist as soon
    as the model is constructed. Plain torch modules may be mixed in.
    """

    def __init__(self, layers=None, name=None):
        super().__init__()
        self.name = name
        self.layers = nn.ModuleList()
        self.input_shape = None
        self.output_shape = None
        self._names = {}
        for layer in layers or []:
            self.add(layer)

    def add(self, layer: nn.Module) -> None:
        if isinstance(layer, SymbolicTensor) and layer.node.input_name is not None:
            if self.layers:
                raise ValueError("an Input must come first in a Sequential")
            self.input_shape = self.output_shape = tuple(layer.shape[1:])
            return
        if not isinstance(layer, nn.Module):
            raise TypeError(f"Sequential takes torch modules (and an ember.Input first), got {type(layer).__name__}")
        if isinstance(layer, Layer):
            if layer.name is None:
                layer.name = self._unique_name(default_name(layer))
            if not self.layers and layer.input_shape is not None:
                self.input_shape = tuple(layer.input_shape)
        self.layers.append(layer)
        if self.input_shape is not None:
            shape = self.output_shape or self.input_shape
            self.output_shape = _build(layer, shape)

    def build(self, input_shape):
        """Build every layer for inputs of `input_shape` (no batch axis)."""
        self.input_shape = tuple(input_shape)
        shape = self.input_shape
        for layer in self.layers:
            shape = _build(layer, shape)
        self.output_shape = shape
        return self

    def forward(self, x):
        mask = None  # each layer's output mask goes to the next layer, as in Keras (masking.py)
        for layer in self.layers:
            x, mask = call_with_mask(layer, x, mask)
        return x

    def __getitem__(self, index):
        return self.layers[index]

    def __len__(self):
        return len(self.layers)

    def _unique_name(self, base):
        count = self._names.get(base, 0)
        self._names[base] = count + 1
        return base if count == 0 else f"{base}_{count}"

    def get_config(self) -> dict:
        layers = []
        for layer in self.layers:
            if not isinstance(layer, Layer):
                raise TypeError(
                    f"cannot describe {type(layer).__name__} as JSON: only ember layers can be saved "
                    "as an architecture; save_weights() works for any model"
                )
            layers.append({"class_name": type(layer).__name__, "config": layer.get_config()})
        return {"name": self.name, "input_shape": list(self.input_shape) if self.input_shape else None,
                "layers": layers}

    @classmethod
    def from_config(cls, config: dict) -> "Sequential":
        from ember.define import layers as layer_module

        built = []
        for entry in config["layers"]:
            layer_cls = getattr(layer_module, entry["class_name"], None)
            if not (isinstance(layer_cls, type) and issubclass(layer_cls, Layer)):
                raise ValueError(f"unknown layer class {entry['class_name']!r} in the saved architecture")
            built.append(layer_cls.from_config(entry["config"]))
        model = cls(built, name=config.get("name"))
        if model.input_shape is None and config.get("input_shape"):
            model.build(config["input_shape"])
        return model


# A Sequential is saved as its layer configs, data from which ember.load() rebuilds it.
register_config_class("sequential", Sequential)


def _build(layer, shape):
    if isinstance(layer, Layer):
        return layer.build_for(shape)
    return infer_output_shape(layer, shape)

