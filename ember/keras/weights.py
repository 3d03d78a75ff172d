"""`load_keras_weights`: Keras weights into an ember model you built yourself.

Keras 3 files (`.weights.h5`, or the weights inside a `.keras`) are matched the way Keras
itself matches them: each layer by the group its class name gives (`conv2d`, `conv2d_1`,
...), in the model's layer order; a model nested as a layer (ConvNeXt's blocks) has a group of its
own (`sequential`, `functional`) whose layers are counted apart. Legacy `.h5` files are matched by
layer name where every name in the file is one of the model's (a converted model keeps Keras'
names), else by order: the n-th layer with weights in the file goes to the n-th ember layer with
weights. There a nested model is one entry, its arrays named by the layer that owns each.
"""
import torch

from ember.define import Functional, Sequential
from ember.define import layers as L
from ember.define.layers.base import ImageLayer, Layer
from ember.saving import ModelFileError
from ember.keras.files import keras3_weight_path, read_keras_file
from ember.keras.layers import KERAS, KERAS_LAYERS, convert_weights, copy_weights

# ember layer class -> the Keras class name its weights are stored under
_KERAS_NAME = {}
for _name in KERAS_LAYERS:
    _cls = getattr(L, _name, None)
    if isinstance(_cls, type) and _cls not in _KERAS_NAME and _name == _cls.__name__:
        _KERAS_NAME[_cls] = _name
for _name in KERAS_LAYERS:  # then Keras' long names for ember's short ones (BatchNorm...)
    _cls = getattr(L, _name, None)
    if isinstance(_cls, type) and _cls not in _KERAS_NAME:
        _KERAS_NAME[_cls] = _name
_KERAS_NAME[L.ScaledAdd] = "CustomScaleLayer"  # InceptionResNetV2's layer, by another name in ember


def load_keras_weights(model: torch.nn.Module, path) -> torch.nn.Module:
    """Copy the weights of a Keras weights or model file into `model` (built with ember layers)."""
    keras_file = read_keras_file(path)
    layout_of = {id(module): layout for module, layout in _layers_with_layout(model)}
    if keras_file.weights.ordered:  # legacy .h5: by order of the layers that have weights
        entries = [(name, arrays) for name, arrays in keras_file.weights.ordered if arrays]
        units = [unit for unit in _units(model) if unit.state_dict()]
        by_name = {getattr(unit, "name", None): unit for unit in units}
        if all(name in by_name for name, _ in entries):  # a converted model has Keras' layer names
            units = [by_name[name] for name, _ in entries]
        elif len(entries) != len(units):
            raise ModelFileError(
                f"{path} has weights for {len(entries)} layers ({', '.join(n for n, _ in entries)}), the model has "
                f"{len(units)} layers with weights ({', '.join(_describe(m) for m in units)})")
        pairs = []
        for unit, (name, arrays) in zip(units, entries):
            if isinstance(unit, (Sequential, Functional)):
                pairs += _split_nested(unit, name, arrays, keras_file.weights.array_names.get(name, []), layout_of)
            else:
                pairs.append((unit, layout_of[id(unit)], name, arrays))
    else:
        pairs = [(module, layout_of[id(module)], group, keras_file.weights.by_path.get(group, []))
                 for module, group in _keras3_groups(model, "", {})]
        pairs = [p for p in pairs if p[0].state_dict() or p[3]]
    problems = []
    for module, layout, source, arrays in pairs:
        problem = _copy(module, layout, arrays)
        if problem:
            problems.append(f"{_describe(module)} <- '{source}': {problem}")
    if problems:
        raise ModelFileError(f"{path} does not fit {type(model).__name__}:\n- " + "\n- ".join(problems))
    return model


def _layers_with_layout(model):
    """Ember layers in order, with the layout of a Dense/BatchNorm input that comes from a
    Flatten of channels_first images (its rows are in C,H,W order, Keras' in H,W,C)."""
    image_format, flat_layout = None, KERAS
    for module in _outer_layers(model):
        if isinstance(module, ImageLayer):
            image_format, flat_layout = module.data_format, KERAS
        elif isinstance(module, L.Flatten) and image_format == "channels_first" and module.input_shape \
                and len(module.input_shape) > 1:
            shape = tuple(module.input_shape)
            flat_layout = ("flat_channels_first", shape[1:] + shape[:1])
        elif not isinstance(module, (L.Dense, L.BatchNorm, L.Dropout, L.Activation)):
            flat_layout = KERAS
        yield module, flat_layout if isinstance(module, (L.Dense, L.BatchNorm)) else KERAS
        if isinstance(module, L.Dense):
            flat_layout = KERAS


def _outer_layers(module):
    """The ember layers in `module` (nested models included), in order, but not the layers a layer is
    made of (a ConvLSTM's convolutions, a Bidirectional's LSTMs): their layouts are the layer's own."""
    for child in module.children():
        if isinstance(child, Layer):
            yield child
        else:
            yield from _outer_layers(child)


def _keras3_groups(module, prefix, counters):
    """(ember layer, its group in a Keras 3 file), in the model's order. A layer's own sub-modules (a
    Bidirectional's LSTMs) are its weights, not layers; a nested Sequential or functional model is a
    group with counters of its own; other containers (ModuleDict, ModuleList) are transparent."""
    for child in module.children():
        if isinstance(child, (Sequential, Functional)):
            group = prefix + keras3_weight_path(type(child).__name__, counters)
            yield from _keras3_groups(child, group + "/", {})
        elif isinstance(child, Layer) and (child.state_dict() or type(child) in _KERAS_NAME):
            yield child, prefix + keras3_weight_path(_keras_class(child), counters)
        elif isinstance(child, Layer):
            continue  # no weights and no Keras name to count: nothing of the file's is its
        else:
            yield from _keras3_groups(child, prefix, counters)


def _units(module):
    """The layers and nested models in `module`, in order: what a legacy file has one entry each for."""
    for child in module.children():
        if isinstance(child, (Layer, Sequential, Functional)):
            yield child
        else:
            yield from _units(child)


def _layers_in(model):
    """The layers of a nested model and of the models nested in it, in order."""
    for unit in _units(model):
        yield from _layers_in(unit) if isinstance(unit, (Sequential, Functional)) else [unit]


def _split_nested(model, name, arrays, array_names, layout_of):
    """A legacy file keeps a nested model's arrays in one entry, each named by a path through the layer
    that owns it ("stem/conv2d/kernel"): each layer of the ember model gets those its name owns."""
    owned = [(path.split("/")[:-1], array) for path, array in zip(array_names, arrays)]
    return [(layer, layout_of[id(layer)], f"{name}/{layer.name}",
             [array for owners, array in owned if layer.name in owners])
            for layer in _layers_in(model) if layer.state_dict()]


def _keras_class(module):
    name = _KERAS_NAME.get(type(module))
    if name is None:
        raise ModelFileError(f"{_describe(module)} has no Keras counterpart whose weights could be read")
    return name


def _copy(module, layout, arrays):
    if isinstance(module, L.Normalization):
        return _copy_statistics(module, arrays)
    converted, problem = convert_weights(_keras_class(module), arrays, module, _weights_config(module), layout, None)
    if converted:
        copy_weights(module, converted)
    return problem


def _weights_config(module):
    """The options of a Keras config the weight converters read, from the ember layer."""
    config = {"name": getattr(module, "name", None) or "", "scale": getattr(module, "scale", True),
              "center": getattr(module, "center", True), "reset_after": getattr(module, "reset_after", True),
              "use_bias": getattr(module, "use_bias", True), "use_gate": getattr(module, "use_gate", False)}
    inner = {"layer": module.forward_layer, "backward_layer": module.backward_layer} \
        if isinstance(module, L.Bidirectional) else {"layer": module.layer} if isinstance(module, L.TimeDistributed) \
        else {}
    for key, layer in inner.items():
        config[key] = {"class_name": _keras_class(layer), "config": _weights_config(layer)}
    return config


def _copy_statistics(module, arrays):
    """A Normalization's adapted mean and variance (and count), kept per axis in the same order in Keras'
    file and ember's layer; a given mean and variance stay in Keras' config, which the layer was built from."""
    if not arrays:
        return None
    if getattr(module, "mean", None) is None:
        return "the layer has no statistics' shape yet: call it once (or adapt it) before loading them"
    expected = tuple(module.mean.shape)
    if len(arrays) != 3 or any(tuple(a.shape) != expected for a in arrays[:2]):
        return f"expected mean, variance and count with mean and variance of shape {expected}, got " \
               f"{[tuple(a.shape) for a in arrays]}"
    with torch.no_grad():
        module.mean.copy_(torch.as_tensor(arrays[0]))
        module.variance.copy_(torch.as_tensor(arrays[1]))
    return None


def _describe(module):
    return f"'{module.name}' ({type(module).__name__})" if getattr(module, "name", None) else type(module).__name__
