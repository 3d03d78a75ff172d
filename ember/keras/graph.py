"""`KerasGraph`: reads the graph spec that ember files of converted functional Keras models held
before functional models were `ember.Model(inputs, outputs)`; `build_module`: a layer built for
a shape, as the converter walks the Keras graph.

A legacy spec lists ember layers (class name and config), the steps of the graph (which tensors
go in, which layers run in order, which tensor comes out) and the outputs. `KerasGraph(spec)`
replays the steps on symbolic tensors, so what it builds is an ordinary functional model.
"""
import itertools

import torch

from ember.define import layers as layer_module
from ember.define.functional import Functional
from ember.define.layers.base import Layer
from ember.define.shapes import infer_output_shape
from ember.define.symbolic import Input, call_module


class KerasGraph(Functional):
    def __init__(self, spec: dict, custom_modules=None):
        modules = dict(custom_modules or {})  # user-supplied replacements of custom Keras layers
        for entry in spec["layers"]:
            layer_cls = getattr(layer_module, entry["class_name"], None)
            if not (isinstance(layer_cls, type) and issubclass(layer_cls, Layer)):
                raise ValueError(f"unknown layer class {entry['class_name']!r} in the graph spec")
            modules[entry["config"]["name"]] = layer_cls(**entry["config"])
        tensors = {entry["ref"]: Input(entry["shape"], name=entry["ref"].split(":")[0], dtype=entry.get("dtype"))
                   for entry in spec["inputs"]}
        for step in spec["steps"]:
            x = [tensors[ref] for ref in step["inputs"]] if step.get("list_input") else tensors[step["inputs"][0]]
            for name in step["layers"]:
                x = call_module(modules[name], (x,), {})
            tensors[step["output"]] = x
        outputs = [tensors[ref] for ref in spec["outputs"]]
        super().__init__([tensors[entry["ref"]] for entry in spec["inputs"]],
                         outputs[0] if len(outputs) == 1 else outputs)


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
