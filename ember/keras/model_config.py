"""The structure of a Keras model config, checked as it is read.

The config is JSON from an untrusted file (`config.json` in a `.keras`, the `model_config`
attribute of a legacy `.h5`), so every value `from_keras` reads from it is checked for its
type (and shapes for their range) here: a wrong one raises ModelFileError naming the file,
where in the config it was, what was expected and what came. Each layer's own options
(units, kernel_size, ...) are interpreted by `ember.keras.layers`, under the check in
`convert._Builder.add_layer`.
"""
from dataclasses import dataclass, field

from ember.saving import ModelFileError

UNKNOWN_DIM = 32  # stands in for a None (variable) size while shapes are inferred
MAX_DIM = 2**31 - 1  # one axis of an input; sizes beyond are not a model's input, and overflow later products
MAX_RANK = 8
MODEL_KINDS = ("Sequential", "Functional", "Model")
MAX_ARGUMENT_DEPTH = 4  # an operation's operands: tensors, numbers, a list of tensors, an index of slices
DTYPES = ("float16", "bfloat16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16",
          "uint32", "uint64", "bool")


def describe(value, limit=60) -> str:
    """What came, for an error message: its JSON type and a short repr."""
    kinds = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number"}
    text = repr(value)
    return f"{kinds.get(type(value), type(value).__name__)} {text if len(text) <= limit else text[:limit] + '...'}"


@dataclass
class NodeCall:
    """One call of a layer in the graph: the refs of its tensor arguments (a list if `list_input`, else
    positional), tensor keyword arguments by name (`mask`, attention's `attention_mask`, an RNN's
    `initial_state` list) and the other keyword arguments (`use_causal_mask`, `training`) as written."""
    refs: list
    list_input: bool = False
    keywords: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TensorRef:
    """A tensor among an operation's arguments: 'layer name:node index' of the call that made it."""
    ref: str


class ConfigReader:
    """Checked reads from one file's model config; `source` names the file and the config in errors."""

    def __init__(self, source: str):
        self.source = source
        # Functional models called as layers: Keras counts their own graph as their node 0, so
        # input_layers, output_layers and tf.keras 2 nodes refer to their first call as node 1
        # (a Keras 3 node's arguments count the calls alone).
        self.functional_layers = set()

    def fail(self, where: str, expected: str, value):
        raise ModelFileError(f"{self.source}: {where} must be {expected}, found {describe(value)}")

    def expect(self, value, kind, where, expected):
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            self.fail(where, expected, value)
        return value

    # --- the model and its layers --------------------------------------------------------------
    def model(self, model_config):
        """(class_name, config, layers) of the top-level model, every layer entry checked."""
        self.expect(model_config, dict, "the model config", "a JSON object")
        class_name = self.expect(model_config.get("class_name"), str, "class_name", "a string such as 'Sequential'")
        config = self.expect(model_config.get("config", {}), dict, "config", "a JSON object")
        layers = self.expect(config.get("layers", []), list, "config.layers", "an array of layers")
        names = set()
        for index, entry in enumerate(layers):
            self.layer(entry, f"config.layers[{index}]")
            name = entry.get("name", entry["config"]["name"])
            if name in names:
                raise ModelFileError(f"{self.source}: two layers are named '{name}'; Keras names each layer once")
            names.add(name)
        return class_name, config, layers

    def layer(self, entry, where):
        self.expect(entry, dict, where, "a JSON object with class_name and config")
        self.expect(entry.get("class_name"), str, f"{where}.class_name", "a string")
        layer_config = self.expect(entry.get("config"), dict, f"{where}.config", "a JSON object")
        self.expect(layer_config.get("name"), str, f"{where}.config.name", "a string")
        if "name" in entry:
            self.expect(entry["name"], str, f"{where}.name", "a string")
        self.expect(entry.get("inbound_nodes", []), list, f"{where}.inbound_nodes", "an array")

    # --- shapes ---------------------------------------------------------------------------------
    def input_shape(self, input_config, body, config, model_config):
        """Shape (no batch axis, None -> UNKNOWN_DIM) and dtype of a model input, from whichever
        spelling the file uses: `batch_shape` (Keras 3), `batch_input_shape` (tf.keras 2)."""
        candidates = [("the InputLayer", input_config or {})]
        if body:  # tf.keras 2 Sequential without InputLayer: the first layer holds the shape
            candidates.append((f"layer '{body[0]['config']['name']}'", body[0]["config"]))
        for where, candidate in candidates:
            key = "batch_shape" if candidate.get("batch_shape") else "batch_input_shape"
            if candidate.get(key):
                return self.batch_shape(candidate[key], f"{where}'s {key}"), \
                    self.dtype(candidate.get("dtype", "float32"), f"{where}'s dtype")
        build_config = self.expect(model_config.get("build_config") or {}, dict, "build_config", "a JSON object")
        for where, batch_shape in (("config.build_input_shape", config.get("build_input_shape")),
                                   ("build_config.input_shape", build_config.get("input_shape"))):
            if batch_shape:
                return self.batch_shape(batch_shape, where), "float32"
        raise ModelFileError(f"{self.source}: the model config gives no input shape (no InputLayer, batch_shape "
                             "or batch_input_shape): it was saved before being built")

    def batch_shape(self, value, where):
        expected = f"a batch shape such as [null, 28, 28, 1]: null or integers 1 to {MAX_DIM}, at most " \
                   f"{MAX_RANK} axes after the batch"
        if not isinstance(value, list) or not 1 <= len(value) <= MAX_RANK + 1:
            self.fail(where, expected, value)
        for dim in value[1:]:
            if dim is not None and (not isinstance(dim, int) or isinstance(dim, bool) or not 1 <= dim <= MAX_DIM):
                self.fail(where, expected, value)
        return tuple(UNKNOWN_DIM if dim is None else dim for dim in value[1:])

    def dtype(self, value, where):
        if isinstance(value, dict):  # Keras 3 may save a DTypePolicy: {"config": {"name": "float32"}}
            value = self.expect(value.get("config", {}), dict, where, "a dtype name or policy").get("name", "float32")
        if value in ("mixed_float16", "mixed_bfloat16"):  # a policy computing in half, taking float32 inputs
            return "float32"
        if value not in DTYPES:
            self.fail(where, f"one of {', '.join(DTYPES)}", value)
        return value

    # --- the graph of a functional model ---------------------------------------------------------
    def node_inputs(self, node, where):
        """The `NodeCall` of one inbound node of a layer, in either format. Keras 3 writes masks as
        tensors computed in the graph (`not_equal(ids, 0)` for Embedding(mask_zero=True)), passed as
        `mask=`; tf.keras 2 leaves them implicit, and ember's layers compute the same ones
        (ember/define/masking.py)."""
        expected = "an inbound node naming its input tensors (Keras 3: {\"args\": [...]}, tf.keras 2: " \
                   "[[layer, node, tensor, kwargs], ...])"
        if isinstance(node, dict):  # Keras 3: {"args": [...], "kwargs": {...}}
            args = node.get("args", [])
            refs = [self.ref(self.tensor_history(t, where), where) for t in keras_tensors(args)]
            kwargs = self.expect(node.get("kwargs", {}), dict, f"{where}.kwargs", "a JSON object")
            list_input = isinstance(args, list) and bool(args) and isinstance(args[0], list)
            call = NodeCall(refs, list_input)
            for key, value in kwargs.items():
                tensors = keras_tensors(value)
                if not tensors:
                    call.options[key] = value
                elif isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
                    call.keywords[key] = self.ref(self.tensor_history(value, where), where)
                elif isinstance(value, list) and len(tensors) == sum(item is not None for item in value):
                    # A list of tensors, some None: the masks of a layer called on a list.
                    call.keywords[key] = [None if item is None else self.ref(self.tensor_history(item, where), where)
                                          for item in value]
                else:
                    self.fail(f"{where}.kwargs.{key}", "one tensor, a list of tensors or a constant", value)
        elif isinstance(node, list):  # tf.keras 2: [[name, node, tensor, kwargs], ...]
            call = NodeCall([self.ref(entry, where, counts_own_graph=True) for entry in node], len(node) > 1)
            for entry in node:
                kwargs = entry[3] if isinstance(entry, list) and len(entry) > 3 and isinstance(entry[3], dict) else {}
                for key, value in kwargs.items():  # a tensor here is [layer, node, tensor]
                    if _is_history(value):
                        call.keywords[key] = self.ref(value, f"{where}.{key}", counts_own_graph=True)
                    elif isinstance(value, list) and value and all(_is_history(v) for v in value):
                        call.keywords[key] = [self.ref(v, f"{where}.{key}", counts_own_graph=True) for v in value]
                    else:
                        call.options[key] = value
        else:
            self.fail(where, expected, node)
        if not call.refs:
            self.fail(where, expected, node)
        return call

    def node_arguments(self, node, where):
        """(args, kwargs) of a Keras 3 operation's inbound node: tensors as TensorRef, Keras'
        `__slice__` as slices, numbers, strings, None and lists as they are."""
        if not isinstance(node, dict):
            self.fail(where, 'an inbound node {"args": [...], "kwargs": {...}}', node)
        args = self.expect(node.get("args", []), list, f"{where}.args", "an array")
        kwargs = self.expect(node.get("kwargs", {}), dict, f"{where}.kwargs", "a JSON object")
        return self.argument(args, f"{where}.args", 0), \
            {key: self.argument(value, f"{where}.kwargs.{key}", 1) for key, value in kwargs.items()}

    def argument(self, value, where, depth):
        if depth > MAX_ARGUMENT_DEPTH:
            self.fail(where, f"operands nested at most {MAX_ARGUMENT_DEPTH} deep", value)
        if isinstance(value, list):
            return [self.argument(item, where, depth + 1) for item in value]
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        kind = value.get("class_name") if isinstance(value, dict) else None
        if kind == "__keras_tensor__":
            return TensorRef(self.ref(self.tensor_history(value, where), where))
        if kind == "__slice__":
            bounds = self.expect(value.get("config"), dict, f"{where}: a __slice__'s config", "a JSON object")
            start, stop, step = (bounds.get(key) for key in ("start", "stop", "step"))
            if any(b is not None and (not isinstance(b, int) or isinstance(b, bool)) for b in (start, stop, step)):
                self.fail(where, "a slice of integers or null", value)
            return slice(start, stop, step)
        self.fail(where, "a tensor, a number, a string, null, a slice or an array of them", value)

    def tensor_history(self, tensor, where):
        config = self.expect(tensor.get("config"), dict, f"{where}: a __keras_tensor__'s config", "a JSON object")
        return config.get("keras_history")

    def tensor_refs(self, value, where):
        """The refs of a model's `input_layers` / `output_layers`: one [name, node, tensor], a list of
        them, or a dict of them by name."""
        if isinstance(value, dict):
            value = list(value.values())
        if not isinstance(value, list) or not value:
            self.fail(where, "a non-empty array of [layer name, node index, tensor index]", value)
        entries = [value] if isinstance(value[0], str) else value
        return [self.ref(entry, where, counts_own_graph=True) for entry in entries]

    def ref(self, history, where, counts_own_graph=False):
        """'name:node' (or 'name:node:tensor' past a call's first output) of a [layer name, node index,
        tensor index] reference; `counts_own_graph`: the index counts a functional layer's own graph as
        node 0."""
        expected = "[layer name, node index, tensor index]"
        if not isinstance(history, list) or len(history) < 3:
            self.fail(where, expected, history)
        name, node_index, tensor_index = history[:3]
        if not isinstance(name, str) or any(not isinstance(i, int) or isinstance(i, bool) or i < 0
                                            for i in (node_index, tensor_index)):
            self.fail(where, expected, history)
        if counts_own_graph and name in self.functional_layers and node_index:
            node_index -= 1
        return output_ref(f"{name}:{node_index}", tensor_index)


def output_ref(call_ref: str, index: int) -> str:
    """The ref of output `index` of the call `call_ref` ('name:node'): the call's own ref for the first."""
    return f"{call_ref}:{index}" if index else call_ref


def _is_history(value) -> bool:
    return isinstance(value, list) and len(value) in (3, 4) and isinstance(value[0], str) \
        and all(isinstance(i, int) and not isinstance(i, bool) for i in value[1:3])


def keras_tensors(value):
    """The `__keras_tensor__` entries anywhere in a node's arguments (walked without recursion:
    the nesting depth is the file's choice)."""
    found, stack = [], [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("class_name") == "__keras_tensor__":
                found.append(item)
            else:
                stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))
    return found
