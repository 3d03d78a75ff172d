"""`KerasGraph`: reads the graph spec that ember files of converted functional Keras models held
before functional models were `ember.Model(inputs, outputs)`; `build_module`: a layer built for
a shape, as the converter walks the Keras graph.

A legacy spec lists ember layers (class name and config), the steps of the graph (which tensors
go in, which layers run in order, which tensor comes out) and the outputs. `KerasGraph(spec)`
replays the steps on symbolic tensors, so what it builds is an ordinary functional model.

`build_call` builds a module for a call on several tensors (positional, as attention's query
and value, or keywords) and gives its output shape, or one shape per output.
"""
import itertools

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from ember.define import layers as layer_module
from ember.define.functional import Functional
from ember.define.layers.base import Layer
from ember.define.shapes import infer_output_shape
from ember.define.symbolic import Input, call_module, map_structure


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


def build_call(module, arg_shapes, list_input, keyword_shapes):
    """Build `module` for a call on tensors of `arg_shapes` (one list argument if `list_input`, else
    positional) and keyword tensors of `keyword_shapes` (a shape or a list of shapes by name); the
    output shape, a tuple of shapes for several outputs."""
    if len(arg_shapes) == 1 and not list_input and not keyword_shapes:
        return build_module(module, arg_shapes[0])
    if list_input and not keyword_shapes:
        return build_module(module, list(arg_shapes))
    if isinstance(module, Layer) and module.call_input_shape is not None:
        return tuple(module.build_for(module.call_input_shape(*_shaped(arg_shapes, list_input),
                                                               **map_structure(_Shaped, keyword_shapes, leaf=tuple))))
    if isinstance(module, Layer):
        module.build_for(list(arg_shapes) if list_input else arg_shapes[0])
    # The output shapes: a call on fake tensors, on the device of the module's parameters (the meta
    # device for the layers from_keras builds, a real one for a user's replacement of a custom layer).
    tensor = next(itertools.chain(module.parameters(), module.buffers()), None)
    device = tensor.device if tensor is not None else torch.get_default_device()
    was_training = module.training
    module.eval()  # batch statistics and dropout are irrelevant to shapes
    try:
        with FakeTensorMode(allow_non_fake_inputs=True) as mode, torch.no_grad():
            def fake(shape):
                return mode.from_tensor(torch.zeros((2, *shape), device=device))
            args = [[fake(s) for s in arg_shapes]] if list_input else [fake(s) for s in arg_shapes]
            out = module(*args, **map_structure(fake, keyword_shapes, leaf=tuple))
    finally:
        module.train(was_training)
    return tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else tuple(tuple(o.shape[1:]) for o in out)


class _Shaped:
    """Stands in for a tensor where only its shape (with a batch axis) is read."""

    def __init__(self, shape):
        self.shape = (2, *shape)


def _shaped(arg_shapes, list_input):
    shaped = [_Shaped(s) for s in arg_shapes]
    return [shaped] if list_input else shaped


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
