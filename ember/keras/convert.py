"""`from_keras`: a Keras model file -> an ember model with the weights loaded.

The Keras config (JSON) is walked once in graph order. Each Keras layer becomes ember
layers (`ember.keras.layers`), built for the shapes flowing through the graph, and its
weights are converted to torch's layout as they are copied in. With
data_format="channels_first", image inputs become NCHW and each tensor carries its layout;
a layer that cannot compute on it natively gets a Permute in front (see layers.py).
"""
from dataclasses import dataclass, field

import torch

from ember.define import layers as L
from ember.define.functional import Functional
from ember.define.sequential import Sequential
from ember.define.symbolic import Input, call_module
from ember.saving import ModelFileError
from ember.keras.files import keras3_weight_path, read_keras_file
from ember.keras.graph import build_module
from ember.keras.layers import (CHANNELS_FIRST, KERAS, KERAS_LAYERS, UnsupportedConfig, convert_weights, copy_weights,
                                is_flat)
from ember.keras.model_config import MODEL_KINDS, ConfigReader

# What interpreting a layer's options can raise when the file gives a wrong type or value
# (a string for units, a negative kernel size, a shape no layer takes): the builders and
# ember's layers check what they expect, torch the rest.
LAYER_CONFIG_ERRORS = (TypeError, ValueError, KeyError, IndexError, AttributeError, ArithmeticError, RuntimeError)


class UnsupportedKerasLayersError(ModelFileError):
    """The model uses layers ember cannot build; every one of them is listed."""


@dataclass
class _Step:
    inputs: list
    modules: list
    output: str
    list_input: bool = False
    keras_layer: dict = None
    weights_layout: object = None
    weights_shape: tuple = None
    custom: bool = False  # a user-supplied module for a custom Keras layer, weights already set


@dataclass
class _Plan:
    inputs: list = field(default_factory=list)  # [(ref, shape, dtype)]
    steps: list = field(default_factory=list)
    outputs: list = field(default_factory=list)


def from_keras(path, data_format="channels_last", custom_layers=None):
    """Load a Keras `.keras` or `.h5` model file as an ember model, weights included.

    Sequential models become `ember.Sequential`; functional models an ember functional model
    (`ember.Model(inputs, outputs)`, a plain torch module with compile / fit / save / export). No TensorFlow or
    Keras is needed or imported, and nothing in the file is executed.

    data_format: "channels_last" takes the NHWC arrays the Keras model took and gives the
        same outputs; "channels_first" takes NCHW images and computes without layout changes.
    custom_layers: {"ClassName" or "layer_name": factory(config, weights) -> torch module}
        for custom Keras layers (and Lambda layers) you re-implement in torch; `weights` are
        the layer's arrays as Keras stored them.
    """
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(f"data_format must be 'channels_last' or 'channels_first', got {data_format!r}")
    keras_file = read_keras_file(path)
    if keras_file.kind == "weights":
        raise ModelFileError(f"{path} holds only weights, no architecture: build the model in ember and call "
                             "ember.load_keras_weights(model, path)")
    model_config = keras_file.config
    reader = ConfigReader(f"{path} ({'config.json' if keras_file.kind == 'keras' else 'attribute model_config'})")
    class_name, config, layers = reader.model(model_config)
    if class_name not in MODEL_KINDS:
        raise UnsupportedKerasLayersError(
            f"{path}: the model is a subclassed Keras model ({class_name!r}): its forward pass is Python code, "
            "not a graph in the file. Rebuild it as a Sequential or functional model in Keras, or build it in "
            "ember and call ember.load_keras_weights(model, weights_path)")
    _check_supported(layers, custom_layers or {}, path)
    keras2 = keras_file.keras_version.startswith("2")
    weights = _weights_by_layer(keras_file, layers, class_name == "Sequential")
    device = torch.get_default_device()
    # Layers are built on the meta device: their sizes come from the config, which may ask
    # for anything (Dense(units=2**34)); memory is allocated only once every layer's
    # parameters are known to match the arrays the file holds (_load_weights).
    with torch.device("meta"):
        builder = _Builder(data_format, keras2, custom_layers or {}, weights, reader, device)
        if class_name == "Sequential":
            plan = builder.sequential(layers, config, model_config)
        else:
            plan = builder.functional(layers, config)
        model = _assemble(plan, class_name == "Sequential")
    _load_weights(plan, weights, path, device)
    return model


def _check_supported(layers, custom_layers, path):
    problems = []
    for layer in layers:
        class_name, name = layer.get("class_name"), layer.get("config", {}).get("name", layer.get("name"))
        if class_name == "InputLayer" or class_name in KERAS_LAYERS and name not in custom_layers:
            continue
        if name in custom_layers or class_name in custom_layers:
            continue
        if class_name == "Lambda":
            problems.append(f"'{name}' is a Lambda layer: it holds serialized Python bytecode, which ember never "
                            "runs (the vector of CVE-2024-3660). Replace it in Keras with a built-in layer, or pass "
                            f"custom_layers={{'{name}': lambda config, weights: <a torch module doing the same>}}")
        elif class_name in ("Sequential", "Functional", "Model"):
            problems.append(f"'{name}' is a nested {class_name} model: flatten it into the outer model in Keras")
        elif layer.get("registered_name") and "keras" not in str(layer.get("module", "keras")) \
                or "package" in str(layer.get("registered_name", "")) or ">" in str(layer.get("registered_name", "")):
            problems.append(f"'{name}' is a custom layer ({class_name}): supply a torch equivalent with "
                            f"custom_layers={{'{class_name}': lambda config, weights: module}}")
        else:
            problems.append(f"'{name}' ({class_name}) is not supported; supported layers: "
                            + ", ".join(sorted(KERAS_LAYERS)))
    if problems:
        raise UnsupportedKerasLayersError(f"{path}: {len(problems)} layer(s) cannot be loaded:\n- "
                                          + "\n- ".join(problems))


class _Builder:
    def __init__(self, data_format, keras2, custom_layers, weights, reader, device):
        self.data_format, self.keras2, self.custom_layers = data_format, keras2, custom_layers
        self.weights, self.reader, self.device = weights, reader, device
        self.tensors = {}  # ref -> (ember shape without batch, layout)
        self.plan = _Plan()
        self.problems = []

    # --- model kinds --------------------------------------------------------------
    def sequential(self, layers, config, model_config):
        body = [entry for entry in layers if entry.get("class_name") != "InputLayer"]
        input_entry = next((entry for entry in layers if entry.get("class_name") == "InputLayer"), None)
        shape, dtype = self.reader.input_shape(input_entry["config"] if input_entry else None, body, config,
                                               model_config)
        ref = self.add_input("input", shape, dtype)
        for entry in body:
            ref = self.add_layer(entry, [ref], False, f"{entry['config']['name']}:0")
        self.plan.outputs = [ref]
        self.raise_problems()
        return self.plan

    def functional(self, layers, config):
        by_name = {entry.get("name", entry["config"]["name"]): entry for entry in layers}
        unfit = sorted(name for name in by_name if not name or "." in name)
        if unfit:  # a functional model keeps its layers in a torch ModuleDict, keyed by name
            raise UnsupportedKerasLayersError(f"{self.reader.source}: layer names {unfit} are empty or contain '.', "
                                              "which ember's graph of named layers cannot hold; rename them in Keras")
        for entry in layers:
            if entry.get("class_name") == "InputLayer":
                shape, dtype = self.reader.input_shape(entry["config"], [], {}, {})
                self.add_input(f"{entry['config']['name']}:0", shape, dtype)
        pending = [(name, index, self.node_inputs(name, index, node)) for name, entry in by_name.items()
                   if entry.get("class_name") != "InputLayer"
                   for index, node in enumerate(entry.get("inbound_nodes", []))]
        while pending:
            waiting = []
            for name, index, (refs, list_input) in pending:
                if all(ref in self.tensors for ref in refs):
                    self.add_layer(by_name[name], refs, list_input, f"{name}:{index}")
                else:
                    waiting.append((name, index, (refs, list_input)))
            if len(waiting) == len(pending):
                missing = sorted({f"{n}:{i}" for n, i, _ in waiting})
                raise ModelFileError(f"{self.reader.source}: the model graph is inconsistent: nodes {missing} wait "
                                     "for tensors no layer produces")
            pending = waiting
        self.plan.outputs = self.graph_refs(config.get("output_layers"), "config.output_layers")
        wanted = self.graph_refs(config.get("input_layers"), "config.input_layers")
        missing = [ref for ref in self.plan.outputs if ref not in self.tensors]
        if missing:
            raise ModelFileError(f"{self.reader.source}: config.output_layers names {missing}, which no layer "
                                 "produces")
        self.plan.inputs.sort(key=lambda entry: wanted.index(entry[0]) if entry[0] in wanted else len(wanted))
        self.raise_problems()
        return self.plan

    def node_inputs(self, name, index, node):
        try:
            return self.reader.node_inputs(node, f"layer '{name}' inbound_nodes[{index}]")
        except UnsupportedConfig as error:
            raise UnsupportedKerasLayersError(f"{self.reader.source}: layer '{name}': {error} is not supported") \
                from error

    def graph_refs(self, value, where):
        try:
            return self.reader.tensor_refs(value, where)
        except UnsupportedConfig as error:
            raise UnsupportedKerasLayersError(f"{self.reader.source}: {where}: {error} is not supported") from error

    def raise_problems(self):
        if self.problems:
            raise UnsupportedKerasLayersError(f"{self.reader.source}: {len(self.problems)} layer(s) cannot be "
                                              "loaded:\n- " + "\n- ".join(self.problems))

    # --- one tensor / one layer -------------------------------------------------------
    def add_input(self, ref, shape, dtype):
        image = self.data_format == "channels_first" and len(shape) == 3 and "int" not in str(dtype)
        layout = CHANNELS_FIRST if image else KERAS
        shape = (shape[-1],) + tuple(shape[:-1]) if image else tuple(shape)
        self.tensors[ref] = (shape, layout)
        self.plan.inputs.append((ref, shape, dtype))
        return ref

    def add_layer(self, entry, refs, list_input, out_ref):
        class_name, config = entry["class_name"], entry["config"]
        name = config["name"]
        factory = self.custom_layers.get(name) or self.custom_layers.get(class_name)
        if factory is not None:
            return self.add_custom(factory, entry, refs, list_input, out_ref)
        spec = KERAS_LAYERS[class_name]
        mixed = len({_layout_key(self.tensors[ref][1]) for ref in refs}) > 1  # they meet in Keras' layout
        refs = [self.convert_layout(ref, (KERAS,) if mixed else spec.accepts) for ref in refs]
        shapes = [self.tensors[ref][0] for ref in refs]
        layout = self.tensors[refs[0]][1]
        shape = shapes if list_input else shapes[0]
        try:
            modules, out_layout = spec.build(config, layout, shapes[0], keras2=self.keras2)
            for module in modules:
                shape = build_module(module, shape)
        except UnsupportedConfig as error:
            self.problems.append(f"'{name}' ({class_name}): {error} is not supported")
            return self.placeholder(out_ref, shapes[0])
        except LAYER_CONFIG_ERRORS as error:
            raise ModelFileError(f"{self.reader.source}: layer '{name}' ({class_name}) cannot be built from its "
                                 f"config for input shape {shapes if list_input else shapes[0]} "
                                 f"({type(error).__name__}: {error})") from error
        self.tensors[out_ref] = (shape, out_layout)
        self.plan.steps.append(_Step(refs, modules, out_ref, list_input, entry, layout, shapes[0]))
        return out_ref

    def add_custom(self, factory, entry, refs, list_input, out_ref):
        refs = [self.convert_layout(ref, (KERAS,)) for ref in refs]
        shapes = [self.tensors[ref][0] for ref in refs]
        with torch.device(self.device):  # the user's module is built for real, with its weights
            module = factory(entry["config"], self.weights.get(entry["config"]["name"], []))
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"custom_layers factory for '{entry['config']['name']}' returned "
                            f"{type(module).__name__}, expected a torch.nn.Module")
        module.name = entry["config"]["name"]
        self.tensors[out_ref] = (build_module(module, shapes if list_input else shapes[0]), KERAS)
        self.plan.steps.append(_Step(refs, [module], out_ref, list_input, entry, custom=True))
        return out_ref

    def placeholder(self, out_ref, shape):
        self.tensors[out_ref] = (shape, KERAS)
        return out_ref

    def convert_layout(self, ref, accepts):
        shape, layout = self.tensors[ref]
        if layout == KERAS or _layout_key(layout) in accepts:
            return ref
        if layout == CHANNELS_FIRST:
            modules = [L.Permute(tuple(range(2, len(shape) + 1)) + (1,), name=f"{_base(ref)}_to_keras_layout")]
        else:  # a channels_first flatten back to Keras' H, W, C order
            keras_shape = layout[1]
            channels_first = (keras_shape[-1],) + tuple(keras_shape[:-1])
            modules = [L.Reshape(channels_first, name=f"{_base(ref)}_unflatten"),
                       L.Permute(tuple(range(2, len(keras_shape) + 1)) + (1,), name=f"{_base(ref)}_to_keras_layout"),
                       L.Flatten(name=f"{_base(ref)}_reflatten")]
        out_ref = f"{ref}/keras_layout"
        if out_ref not in self.tensors:
            for module in modules:
                shape = build_module(module, shape)
            self.tensors[out_ref] = (shape, KERAS)
            self.plan.steps.append(_Step([ref], modules, out_ref))
        return out_ref


def _base(ref):
    return ref.split(":")[0].replace("/", "_")


def _layout_key(layout):
    return "flat" if is_flat(layout) else layout


# --- weights ---------------------------------------------------------------------------
def _weights_by_layer(keras_file, layers, sequential):
    """Keras arrays per layer name. Keras 3 zips name each layer's group; files from older
    Keras 3 releases are matched by the snake_case path Keras derives from the class name."""
    weights = keras_file.weights
    if keras_file.kind == "h5" or weights.by_name:
        return weights.by_name
    counters, out = {}, {}
    for entry in layers:
        if sequential and entry["class_name"] == "InputLayer":
            continue
        out[entry["config"]["name"]] = weights.by_path.get(keras3_weight_path(entry["class_name"], counters), [])
    return out


def _load_weights(plan, weights, path, device):
    """Check every layer's arrays against its parameters (still on the meta device), then
    allocate the parameters on `device` and copy the arrays in: nothing sized by the config
    is allocated unless the file holds the arrays to fill it."""
    problems, loaded, fitted = [], set(), []
    for step in plan.steps:
        if step.keras_layer is None or step.custom:
            continue
        name, class_name = step.keras_layer["config"]["name"], step.keras_layer["class_name"]
        if name in loaded:
            continue  # a shared layer, called more than once
        loaded.add(name)
        arrays, module = weights.get(name, []), step.modules[0]
        converted, problem = convert_weights(class_name, arrays, module, step.keras_layer["config"],
                                             step.weights_layout, step.weights_shape)
        if problem:
            problems.append(f"'{name}' ({class_name}): {problem}")
        elif converted:
            fitted.append((module, converted))
    if problems:
        raise ModelFileError(f"{path}: the weights do not match the architecture:\n- " + "\n- ".join(problems))
    for module, converted in fitted:
        copy_weights(module, converted, device)


# --- the model ---------------------------------------------------------------------------
def _assemble(plan, sequential):
    single_chain = all(len(step.inputs) == 1 and not step.list_input for step in plan.steps)
    if sequential and single_chain:
        shape, dtype = plan.inputs[0][1], plan.inputs[0][2]
        modules = [module for step in plan.steps for module in step.modules]
        return Sequential([Input(shape, dtype=dtype)] + modules)
    # Replay the plan on symbolic tensors: a functional model like any written with ember.Input.
    tensors = {ref: Input(shape, name=_base(ref), dtype=dtype) for ref, shape, dtype in plan.inputs}
    by_name = {}  # a Keras layer called twice is one module (shared weights)
    for step in plan.steps:
        step.modules = [by_name.setdefault(module.name, module) for module in step.modules]
        x = [tensors[ref] for ref in step.inputs] if step.list_input else tensors[step.inputs[0]]
        for module in step.modules:
            x = call_module(module, (x,), {})
        tensors[step.output] = x
    outputs = [tensors[ref] for ref in plan.outputs]
    return Functional([tensors[ref] for ref, _, _ in plan.inputs], outputs[0] if len(outputs) == 1 else outputs)
