"""`KerasGraph`: a Keras functional model as a torch module, rebuilt from a JSON spec.

The spec lists the ember layers (class name and config, as `Sequential.get_config()`
writes them) and the steps of the graph: which tensors go in, which layers run in order,
which tensor comes out. Being JSON, it is what `model.save()` records and `ember.load()`
rebuilds: a converted functional model is saved and loaded like any ember model (unless
it holds user-supplied modules for custom layers, which JSON cannot describe).
"""
import itertools

import torch
from torch import nn

from ember.define import layers as layer_module
from ember.define.layers.base import Layer
from ember.define.model import Model
from ember.define.shapes import infer_output_shape


class KerasGraph(Model):
    def __init__(self, spec: dict, custom_modules=None):
        super().__init__()
        self.spec = spec
        self.input_names = [entry["ref"] for entry in spec["inputs"]]
        self.output_refs = list(spec["outputs"])
        self.layers = nn.ModuleDict()
        for name, module in (custom_modules or {}).items():
            self.layers[name] = module  # user-supplied replacements of custom Keras layers
        for entry in spec["layers"]:
            layer_cls = getattr(layer_module, entry["class_name"], None)
            if not (isinstance(layer_cls, type) and issubclass(layer_cls, Layer)):
                raise ValueError(f"unknown layer class {entry['class_name']!r} in the graph spec")
            self.layers[entry["config"]["name"]] = layer_cls(**entry["config"])
        self.build({entry["ref"]: tuple(entry["shape"]) for entry in spec["inputs"]})

    def build(self, shapes: dict) -> None:
        """Create every layer's parameters by walking the graph with the input shapes."""
        shapes = dict(shapes)
        for step in self.spec["steps"]:
            shape = [shapes[ref] for ref in step["inputs"]] if step.get("list_input") else shapes[step["inputs"][0]]
            for name in step["layers"]:
                shape = build_module(self.layers[name], shape)
            shapes[step["output"]] = shape

    def forward(self, x):
        """`x`: the input tensor, or for a model with several inputs a list (or a dict by
        input name) of tensors, as Keras' `model([a, b])`."""
        inputs = [x[name] for name in self.input_names] if isinstance(x, dict) else \
            list(x) if isinstance(x, (list, tuple)) else [x]
        if len(inputs) != len(self.input_names):
            raise ValueError(f"this model takes {len(self.input_names)} inputs ({', '.join(self.input_names)}), "
                             f"got {len(inputs)}")
        tensors = dict(zip(self.input_names, inputs))
        for step in self.spec["steps"]:
            x = [tensors[ref] for ref in step["inputs"]] if step.get("list_input") else tensors[step["inputs"][0]]
            for name in step["layers"]:
                x = self.layers[name](x)
            tensors[step["output"]] = x
        outputs = tuple(tensors[ref] for ref in self.output_refs)
        return outputs[0] if len(outputs) == 1 else outputs


def build_module(module, shape):
    """Build `module` for inputs of `shape` (a list of shapes for merge layers); its output shape."""
    if isinstance(module, Layer):
        return tuple(module.build_for(shape))
    # A plain torch module (a user's replacement of a custom layer) is already built: its
    # shape is inferred on the device of its parameters, whatever the default device is
    # (from_keras builds its own layers on the meta device).
    tensor = next(itertools.chain(module.parameters(), module.buffers()), None)
    with torch.device(tensor.device if tensor is not None else torch.get_default_device()):
        return infer_output_shape(module, shape)
