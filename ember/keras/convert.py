"""`from_keras`: a Keras model file -> an ember model with the weights loaded.

The Keras config (JSON) is walked once in graph order. Each Keras layer becomes ember
layers (`ember.keras.layers`), built for the shapes flowing through the graph, and its
weights are converted to torch's layout as they are copied in. With
data_format="channels_first", image inputs become NCHW and each tensor carries its layout;
a layer that cannot compute on it natively gets a Permute in front (see layers.py).
"""
from dataclasses import dataclass, field

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from ember.define import layers as L
from ember.define.functional import Functional
from ember.define.sequential import Sequential
from ember.define.masking import takes_argument
from ember.define.ops import OPS
from ember.define.symbolic import Input, call_module, call_op, flatten, map_structure
from ember.saving import ModelFileError
from ember.keras.files import keras3_weight_path, read_keras_file
from ember.keras.graph import build_call, build_module
from ember.keras.layers import (CHANNELS_FIRST, KERAS, KERAS_LAYERS, UnsupportedConfig, apply_regularizers,
                                convert_weights, copy_weights, is_flat)
from ember.keras.model_config import MODEL_KINDS, ConfigReader, NodeCall, TensorRef, output_ref
from ember.keras.operations import KERAS_OPERATIONS, is_operation, operation_call

MAX_NESTED_MODELS = 16  # models inside models; Keras' own applications nest two deep
_PROBE_BATCH = 3  # the batch size an operation's output shape is found with: any axis of another size is not it
# What interpreting a layer's options can raise when the file gives a wrong type or value
# (a string for units, a negative kernel size, a shape no layer takes): the builders and
# ember's layers check what they expect, torch the rest.
LAYER_CONFIG_ERRORS = (TypeError, ValueError, KeyError, IndexError, AttributeError, ArithmeticError, RuntimeError)


class UnsupportedKerasLayersError(ModelFileError):
    """The model uses layers ember cannot build; every one of them is listed."""


@dataclass
class _Step:
    inputs: list  # refs of the tensor arguments: one list argument if list_input, else positional
    modules: list
    output: str
    list_input: bool = False
    keras_layer: dict = None
    weights_layout: object = None
    weights_shape: tuple = None
    custom: bool = False  # a user-supplied module for a custom Keras layer, weights already set
    operation: tuple = None  # (ember.ops name, args with TensorRefs, options) of a Keras operation
    nested: tuple = None  # (plan, _LayerArrays) of a nested Keras model, the step's one module
    keywords: dict = field(default_factory=dict)  # the first module's tensor keyword arguments (`mask=`): refs
    options: dict = field(default_factory=dict)  # its other keyword arguments (`use_causal_mask=True`)


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
    custom_layers: {key: factory(config, weights) -> torch module} for layers (custom, Lambda, or
        built-in ones you want replaced) you re-implement in torch, keyed by layer name, registered
        name ("package>Class") or class name, and for operations, keyed by their layer name;
        `weights` are the layer's arrays as Keras stored them. A layer called on a list of tensors
        gets the list; an operation its tensor operands (a list if several; constants are left out).

    Models nested in the model (called as layers) become ember Sequential or functional models
    inside it, with their own weights.
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
    weights = _LayerArrays(_weights_by_layer(keras_file, layers, class_name == "Sequential"),
                           keras_file.weights.array_names, keras_file.weights.by_name)
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


def custom_factory(custom_layers, entry):
    """The user's factory for a config entry: keyed by its layer name, registered name
    (`package>Class`) or class name, in that order."""
    for key in _custom_keys(entry):
        if key in custom_layers:
            return custom_layers[key]
    return None


def _custom_keys(entry):
    if is_operation(entry):  # an operation's class (Add, Multiply) names a layer too: it is replaced by name only
        return (entry["config"]["name"],)
    class_name, registered = entry["class_name"], entry.get("registered_name")
    # Legacy .h5 files written by Keras 3 name a registered custom class `package>Class` in class_name.
    registered = registered if isinstance(registered, str) else class_name if ">" in class_name else None
    return entry["config"]["name"], registered, class_name.rsplit(">", 1)[-1]


def _check_supported(layers, custom_layers, path):
    problems, unknown = [], set()
    for layer in layers:
        class_name, name = layer["class_name"], layer["config"]["name"]
        module, registered = layer.get("module"), layer.get("registered_name")
        if class_name == "InputLayer" or custom_factory(custom_layers, layer) is not None:
            continue
        if is_operation(layer):
            if class_name not in KERAS_OPERATIONS:
                problems.append(f"'{name}' is the Keras operation {class_name}"
                                + (f" ({module})" if isinstance(module, str) else "") + ", which ember cannot convert")
                unknown.add("operations")
        elif class_name in KERAS_LAYERS or class_name in MODEL_KINDS:
            continue
        elif class_name == "Lambda":
            problems.append(f"'{name}' is a Lambda layer: it holds serialized Python bytecode, which ember never "
                            "runs (the vector of CVE-2024-3660). Replace it in Keras with a built-in layer, or pass "
                            f"custom_layers={{'{name}': lambda config, weights: <a torch module doing the same>}}")
        elif ">" in class_name or ">" in str(registered) or registered and "keras" not in str(module):
            plain_class = _custom_keys(layer)[2]
            problems.append(f"'{name}' is a custom layer ({plain_class}): supply a torch equivalent with "
                            f"custom_layers={{'{plain_class}': lambda config, weights: module}}")
        else:
            problems.append(f"'{name}' ({class_name}) is not a layer ember supports")
            unknown.add("layers")
    if problems:
        supported = {"layers": sorted(KERAS_LAYERS), "operations": sorted(KERAS_OPERATIONS)}
        raise UnsupportedKerasLayersError(
            f"{path}: {len(problems)} layer(s) cannot be loaded:\n- " + "\n- ".join(problems) + "".join(
                f"\nSupported {kind}: {', '.join(supported[kind])}" for kind in sorted(unknown)))


class _Builder:
    def __init__(self, data_format, keras2, custom_layers, weights, reader, device, outer_inputs=None, depth=0):
        self.data_format, self.keras2, self.custom_layers = data_format, keras2, custom_layers
        self.weights, self.reader, self.device = weights, reader, device
        self.outer_inputs = outer_inputs  # a nested model's: the (shape, layout) of the tensors it is called on
        self.depth = depth  # how many models this one is nested in
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
            ref = self.add_layer(entry, NodeCall([ref]), f"{entry['config']['name']}:0")
        self.plan.outputs = [ref]
        self.raise_problems()
        return self.plan

    def functional(self, layers, config):
        by_name = {entry.get("name", entry["config"]["name"]): entry for entry in layers}
        unfit = sorted(name for name in by_name if not name or "." in name)
        if unfit:  # a functional model keeps its layers in a torch ModuleDict, keyed by name
            raise UnsupportedKerasLayersError(f"{self.reader.source}: layer names {unfit} are empty or contain '.', "
                                              "which ember's graph of named layers cannot hold; rename them in Keras")
        self.reader.functional_layers = {name for name, entry in by_name.items()
                                         if entry.get("class_name") in ("Functional", "Model")}
        wanted = self.graph_refs(config.get("input_layers"), "config.input_layers")
        if self.outer_inputs is not None and len(wanted) != len(self.outer_inputs):
            raise ModelFileError(f"{self.reader.source}: the model takes {len(wanted)} inputs and is called on "
                                 f"{len(self.outer_inputs)}")
        for entry in layers:
            if entry.get("class_name") == "InputLayer":
                shape, dtype = self.reader.input_shape(entry["config"], [], {}, {})
                ref = f"{entry['config']['name']}:0"
                self.add_input(ref, shape, dtype, wanted.index(ref) if ref in wanted else 0)
        pending = [(name, index, self.node_call(by_name[name], index, node)) for name, entry in by_name.items()
                   if entry.get("class_name") != "InputLayer"
                   for index, node in enumerate(entry.get("inbound_nodes", []))]
        while pending:
            waiting = []
            for name, index, (refs, add) in pending:
                if all(ref in self.tensors for ref in refs):
                    add(f"{name}:{index}")
                else:
                    waiting.append((name, index, (refs, add)))
            if len(waiting) == len(pending):
                missing = sorted({f"{n}:{i}" for n, i, _ in waiting})
                absent = sorted({ref for _, _, (refs, _) in waiting for ref in refs if ref not in self.tensors})
                raise ModelFileError(f"{self.reader.source}: the model graph is inconsistent: nodes {missing} wait "
                                     f"for tensors no layer produces (layer:node[:output] {absent})")
            pending = waiting
        self.plan.outputs = self.graph_refs(config.get("output_layers"), "config.output_layers")
        missing = [ref for ref in self.plan.outputs if ref not in self.tensors]
        if missing:
            raise ModelFileError(f"{self.reader.source}: config.output_layers names {missing}, which no layer "
                                 "produces")
        self.plan.inputs.sort(key=lambda entry: wanted.index(entry[0]) if entry[0] in wanted else len(wanted))
        self.raise_problems()
        return self.plan

    def node_call(self, entry, index, node):
        """(the refs one call of a layer or operation waits for, add(out_ref) recording that call)."""
        name = entry["config"]["name"]
        where = f"layer '{name}' inbound_nodes[{index}]"
        if is_operation(entry):
            args, kwargs = self.reader.node_arguments(node, where)
            refs = [arg.ref for arg in _tensor_refs((args, kwargs))]
            if not refs:
                self.reader.fail(where, "the arguments of an operation on at least one tensor", node)
            return refs, lambda out_ref: self.add_operation(entry, args, kwargs, out_ref)
        call = self.reader.node_inputs(node, where)
        return call.refs + flatten(call.keywords, leaf=str), lambda out_ref: self.add_layer(entry, call, out_ref)

    def graph_refs(self, value, where):
        return self.reader.tensor_refs(value, where)

    def raise_problems(self):
        if self.problems:
            raise UnsupportedKerasLayersError(f"{self.reader.source}: {len(self.problems)} layer(s) cannot be "
                                              "loaded:\n- " + "\n- ".join(self.problems))

    # --- one tensor / one layer -------------------------------------------------------
    def add_input(self, ref, shape, dtype, position=0):
        if self.outer_inputs is not None:  # a nested model takes the outer tensors as they come
            shape, layout = self.outer_inputs[position]
        else:
            image = self.data_format == "channels_first" and len(shape) == 3 and "int" not in str(dtype)
            layout = CHANNELS_FIRST if image else KERAS
            shape = (shape[-1],) + tuple(shape[:-1]) if image else tuple(shape)
        self.tensors[ref] = (shape, layout)
        self.plan.inputs.append((ref, shape, dtype))
        return ref

    def add_layer(self, entry, call, out_ref):
        class_name, name = entry["class_name"], entry["config"]["name"]
        # Tensor keywords (masks, attention masks, initial states) in Keras' layout.
        keywords = map_structure(lambda ref: self.convert_layout(ref, (KERAS,)), call.keywords, leaf=str)
        factory = custom_factory(self.custom_layers, entry)
        if factory is not None:
            step = self.add_custom(factory, entry, call.refs, call.list_input, out_ref, keywords)
        elif class_name in MODEL_KINDS:
            step = self.add_model(entry, call.refs, out_ref)
        else:
            step = self.add_built_in(entry, call.refs, call.list_input, out_ref, keywords)
        if step is None:
            return out_ref
        if self.reader.expect(entry["config"].get("trainable", True), bool, f"layer '{name}': trainable",
                              "true or false") is False and not step.custom:
            _freeze(step.modules)  # Keras' `trainable = False`: fit leaves its weights and statistics
        self.add_call_arguments(step, entry, keywords, call.options)
        return out_ref

    def add_call_arguments(self, step, entry, keywords, options):
        """The keyword arguments of the call the step's first module takes: tensors (masks, initial
        states) by ref, and the options Keras recorded that ember reproduces."""
        class_name, name = entry["class_name"], entry["config"]["name"]
        for key in sorted(keywords):
            if takes_argument(step.modules[0], key):
                step.keywords[key] = keywords[key]
            else:
                self.problems.append(f"'{name}' ({class_name}) is given the tensor argument {key}=, which its "
                                     f"ember module {type(step.modules[0]).__name__} does not take")
        call_options = KERAS_LAYERS[class_name].call_options if class_name in KERAS_LAYERS and not step.custom else ()
        for key, value in sorted(options.items()):
            if key == "training":  # `base_model(x, training=False)`: this call's mode
                if value is not None and not isinstance(value, bool):
                    self.reader.fail(f"layer '{name}': the call's training", "true, false or null", value)
                # tf.keras 2 runs the call in that mode; Keras 3's functional models let fit's and
                # predict's mode override it (measured with Keras 3.15), so a Keras 3 file's is left out.
                if self.keras2 and value is not None:
                    step.options[key] = value
            elif key in call_options:
                step.options[key] = self.reader.expect(value, bool, f"layer '{name}': the call's {key}",
                                                       "true or false")
            elif value is not None and value is not False:
                self.problems.append(f"'{name}' ({class_name}) is called with {key}={value!r:.60}, which ember's "
                                     f"{type(step.modules[0]).__name__} does not take")

    def add_built_in(self, entry, refs, list_input, out_ref, keywords):
        """The step of a built-in Keras layer (None where it cannot be built); `keywords`: the tensor
        keyword arguments its ember module takes, by name."""
        class_name, config = entry["class_name"], entry["config"]
        name = config["name"]
        spec = KERAS_LAYERS[class_name]
        mixed = len({_layout_key(self.tensors[ref][1]) for ref in refs}) > 1  # they meet in Keras' layout
        refs = [self.convert_layout(ref, (KERAS,) if mixed else spec.accepts) for ref in refs]
        shapes = [self.tensors[ref][0] for ref in refs]
        layout = self.tensors[refs[0]][1]
        try:
            modules, out_layout = spec.build(config, layout, shapes[0], keras2=self.keras2)
            shape = build_call(modules[0], shapes, list_input, self.keyword_shapes(keywords, modules[0]))
            for module in modules[1:]:
                shape = build_module(module, shape)
            apply_regularizers(modules[0], config)
        except UnsupportedConfig as error:
            self.problems.append(f"'{name}' ({class_name}): {error} is not supported")
            self.placeholder(out_ref, shapes[0])
            return None
        except LAYER_CONFIG_ERRORS as error:
            raise ModelFileError(f"{self.reader.source}: layer '{name}' ({class_name}) cannot be built from its "
                                 f"config for input shape {shapes if list_input or len(shapes) > 1 else shapes[0]} "
                                 f"({type(error).__name__}: {error})") from error
        self.add_outputs(out_ref, shape, out_layout)
        step = _Step(refs, modules, out_ref, list_input, entry, layout, shapes[0])
        self.plan.steps.append(step)
        return step

    def keyword_shapes(self, keywords, module):
        """The shapes of the tensor keywords `module` takes (masks aside: they change no shape)."""
        return {key: map_structure(lambda ref: self.tensors[ref][0], refs, leaf=str)
                for key, refs in keywords.items() if key != "mask" and takes_argument(module, key)}

    def add_outputs(self, out_ref, shape, layout):
        """Record a call's output: one shape, or a tuple of shapes for a call with several outputs
        (refs 'name:node', 'name:node:1', ...)."""
        shapes = shape if shape and isinstance(shape[0], tuple) else (shape,)
        for index, one in enumerate(shapes):
            self.tensors[output_ref(out_ref, index)] = (one, layout)

    def add_model(self, entry, refs, out_ref):
        """A Keras model called as a layer: converted on its own (its layers, its weights) into an
        ember Sequential or functional model, called as one module in this graph."""
        name = entry["config"]["name"]
        if self.depth == MAX_NESTED_MODELS:
            raise ModelFileError(f"{self.reader.source}: models nest deeper than {MAX_NESTED_MODELS} levels at "
                                 f"'{name}'")
        refs = [self.convert_layout(ref, (KERAS, CHANNELS_FIRST)) for ref in refs]  # a model takes no flat layout
        reader = ConfigReader(f"{self.reader.source}, nested model '{name}'")
        class_name, config, layers = reader.model(entry)
        _check_supported(layers, self.custom_layers, reader.source)
        inner = _Builder(self.data_format, self.keras2, self.custom_layers, self.weights.nested(name, layers), reader,
                         self.device, outer_inputs=[self.tensors[ref] for ref in refs], depth=self.depth + 1)
        sequential = class_name == "Sequential"
        plan = inner.sequential(layers, config, entry) if sequential else inner.functional(layers, config)
        model = _assemble(plan, sequential, name)
        for index, ref in enumerate(plan.outputs):
            self.tensors[output_ref(out_ref, index)] = inner.tensors[ref]
        step = _Step(refs, [model], out_ref, len(refs) > 1, entry, nested=(plan, inner.weights))
        self.plan.steps.append(step)
        return step

    def add_operation(self, entry, args, kwargs, out_ref):
        class_name, name = entry["class_name"], entry["config"]["name"]
        refs = [arg.ref for arg in _tensor_refs(args)]
        factory = custom_factory(self.custom_layers, entry)
        if factory is not None:  # the user's module takes the operation's tensor operands
            self.add_custom(factory, entry, refs, len(refs) > 1, out_ref, {})
            return out_ref
        if kwargs:
            self.problems.append(f"'{name}' (operation {class_name}): keyword operands {sorted(kwargs)} are not "
                                 "supported")
            return self.placeholder(out_ref, self.tensors[refs[0]][0])
        try:
            op, args, options = operation_call(class_name, entry["config"], args)
        except UnsupportedConfig as error:
            self.problems.append(f"'{name}' (operation {class_name}): {error} is not supported")
            return self.placeholder(out_ref, self.tensors[refs[0]][0])
        # Element-wise on one shape, with numbers for constants (an array constant broadcasts along
        # Keras' last axis), an operation computes on any layout.
        native = KERAS_OPERATIONS[class_name].elementwise and len({self.tensors[ref] for ref in refs}) == 1 \
            and all(isinstance(arg, (TensorRef, int, float)) for arg in args)
        if not native:  # an operation's axes and broadcasting are Keras' own
            converted = {ref: self.convert_layout(ref, (KERAS,)) for ref in refs}
            args = _map_tensor_refs(lambda arg: TensorRef(converted[arg.ref]), args)
            refs = list(converted.values())
        try:
            shape = operation_output_shape(op, args, options, {ref: self.tensors[ref][0] for ref in refs})
        except LAYER_CONFIG_ERRORS as error:
            raise ModelFileError(f"{self.reader.source}: layer '{name}' (operation {class_name} -> ember.ops.{op}) "
                                 f"cannot run on inputs of shapes {[self.tensors[ref][0] for ref in refs]} with "
                                 f"options {options} ({type(error).__name__}: {error})") from error
        if shape is None:
            self.problems.append(f"'{name}' (operation {class_name}) computes across the batch axis, which is not "
                                 "supported")
            return self.placeholder(out_ref, self.tensors[refs[0]][0])
        self.tensors[out_ref] = (shape, self.tensors[refs[0]][1] if native else KERAS)
        self.plan.steps.append(_Step(refs, [], out_ref, operation=(op, args, options)))
        return out_ref

    def add_custom(self, factory, entry, refs, list_input, out_ref, keywords):
        refs = [self.convert_layout(ref, (KERAS,)) for ref in refs]
        shapes = [self.tensors[ref][0] for ref in refs]
        with torch.device(self.device):  # the user's module is built for real, with its weights
            module = factory(entry["config"], self.weights.get(entry["config"]["name"], []))
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"custom_layers factory for '{entry['config']['name']}' returned "
                            f"{type(module).__name__}, expected a torch.nn.Module")
        module.name = entry["config"]["name"]
        self.add_outputs(out_ref, build_call(module, shapes, list_input, self.keyword_shapes(keywords, module)), KERAS)
        step = _Step(refs, [module], out_ref, list_input, entry, custom=True)
        self.plan.steps.append(step)
        return step

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


def _tensor_refs(args):
    return flatten(args, leaf=TensorRef)


def _map_tensor_refs(function, args):
    return map_structure(function, args, leaf=TensorRef)


def operation_output_shape(op, args, options, shapes):
    """The shape (no batch axis) of `ember.ops.<op>` on tensors of `shapes` (by ref), run on fake
    tensors; None where the batch axis does not come out as it went in (a mean over everything)."""
    with FakeTensorMode(allow_non_fake_inputs=True) as mode, torch.no_grad():
        fake = {ref: mode.from_tensor(torch.zeros((_PROBE_BATCH, *shape))) for ref, shape in shapes.items()}
        out = OPS[op](*_map_tensor_refs(lambda arg: fake[arg.ref], args), **options)
    if not isinstance(out, torch.Tensor) or out.dim() == 0 or out.shape[0] != _PROBE_BATCH:
        return None
    return tuple(out.shape[1:])


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


@dataclass
class _LayerArrays:
    """The file's arrays for one model's layers: the file's model, or a model nested in it."""
    arrays: dict  # layer name -> [arrays]
    array_names: dict  # legacy .h5: layer name -> its arrays' paths ("block/dense_1/kernel"); {} for .keras
    file_arrays: dict  # .keras: every layer's arrays by name, a nested model's layers as "model/layer"
    prefix: str = ""  # .keras: this nested model's "model/" in file_arrays

    def get(self, name, default=None):
        return self.arrays.get(name, default)

    def nested(self, model_name, layers):
        names = [entry["config"]["name"] for entry in layers]
        if model_name not in self.array_names:  # .keras: each layer of a nested model has a group of its own
            prefix = f"{self.prefix}{model_name}/"
            return _LayerArrays({name: self.file_arrays.get(prefix + name, []) for name in names}, {},
                                self.file_arrays, prefix)
        # Legacy .h5: the nested model's group holds all its arrays, each named by a path through
        # the layer that owns it ("block/dense_1/kernel" in a Sequential, "dense_1/kernel" in a functional).
        arrays, array_names = {name: [] for name in names}, {name: [] for name in names}
        for path, array in zip(self.array_names[model_name], self.arrays.get(model_name, [])):
            owner = next((part for part in path.split("/") if part in arrays), None)
            if owner is not None:
                arrays[owner].append(array)
                array_names[owner].append(path)
        return _LayerArrays(arrays, array_names, {})


def _load_weights(plan, weights, path, device):
    """Check every layer's arrays against its parameters (still on the meta device), then
    allocate the parameters on `device` and copy the arrays in: nothing sized by the config
    is allocated unless the file holds the arrays to fill it."""
    problems, fitted = [], []
    _match_weights(plan, weights, "", problems, fitted)
    if problems:
        raise ModelFileError(f"{path}: the weights do not match the architecture:\n- " + "\n- ".join(problems))
    for module, converted in fitted:
        copy_weights(module, converted, device)


def _match_weights(plan, weights, where, problems, fitted):
    """(module, converted arrays) of each layer of `plan` into `fitted`, or what does not fit into
    `problems`; layers of nested models are named "model/layer"."""
    loaded = set()
    for step in plan.steps:
        if step.keras_layer is None or step.custom:
            continue
        name, class_name = step.keras_layer["config"]["name"], step.keras_layer["class_name"]
        if name in loaded:
            continue  # a shared layer, called more than once
        loaded.add(name)
        if step.nested is not None:
            _match_weights(*step.nested, f"{where}{name}/", problems, fitted)
            continue
        arrays, module = weights.get(name, []), step.modules[0]
        converted, problem = convert_weights(class_name, arrays, module, step.keras_layer["config"],
                                             step.weights_layout, step.weights_shape)
        if problem:
            problems.append(f"'{where}{name}' ({class_name}): {problem}")
        elif converted:
            fitted.append((module, converted))


def _freeze(modules):
    for module in modules:
        for inner in module.modules():
            if isinstance(inner, L.Layer):
                inner.trainable = False
        for parameter in module.parameters():
            parameter.requires_grad_(False)


# --- the model ---------------------------------------------------------------------------
def _assemble(plan, sequential, name=None):
    single_chain = all(len(step.inputs) == 1 and not step.list_input and not step.keywords and not step.options
                       for step in plan.steps)
    if sequential and single_chain:
        shape, dtype = plan.inputs[0][1], plan.inputs[0][2]
        modules = [module for step in plan.steps for module in step.modules]
        return Sequential([Input(shape, dtype=dtype)] + modules, name=name)
    # Replay the plan on symbolic tensors: a functional model like any written with ember.Input.
    tensors = {ref: Input(shape, name=_base(ref), dtype=dtype) for ref, shape, dtype in plan.inputs}
    by_name = {}  # a Keras layer called twice is one module (shared weights)
    for step in plan.steps:
        if step.operation:
            op, args, options = step.operation
            tensors[step.output] = call_op(op, *_map_tensor_refs(lambda arg: tensors[arg.ref], args), **options)
            continue
        step.modules = [by_name.setdefault(module.name, module) for module in step.modules]
        args = [tensors[ref] for ref in step.inputs]
        keywords = map_structure(lambda ref: tensors[ref], step.keywords, leaf=str)
        x = call_module(step.modules[0], (args,) if step.list_input else tuple(args), {**step.options, **keywords})
        for module in step.modules[1:]:
            x = call_module(module, (x,), {})
        for index, output in enumerate(x if isinstance(x, (tuple, list)) else [x]):
            tensors[output_ref(step.output, index)] = output
    outputs = [tensors[ref] for ref in plan.outputs]
    return Functional([tensors[ref] for ref, _, _ in plan.inputs], outputs[0] if len(outputs) == 1 else outputs,
                      name=name)
