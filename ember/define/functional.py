"""`ember.Model(inputs, outputs)`: the graph recorded from symbolic tensors, as a plain module.

The graph is kept as JSON-able data (`self.graph`): the inputs (name, shape, dtype), the nodes
in the order they run (a layer by name, or an `ember.ops` function by name, with its arguments
as references to tensors and constants) and the outputs. `forward` walks it; `get_config()` is
it plus each layer's config, so `save()`/`ember.load()` rebuild the model with no user code.
A layer called twice is one module (shared weights); a model can be called as a layer.
"""
from torch import nn

from ember.define.layers.base import default_name
from ember.define.model import Model
from ember.define.modes import call_in_mode
from ember.define.ops import OPS
from ember.define.symbolic import SymbolicTensor, flatten
from ember.saving.registry import register_config_class


class Functional(Model):
    takes_structured_input = True  # fit passes a dict of inputs as one argument, keyed by input name

    def __init__(self, inputs=None, outputs=None, name=None):
        super().__init__()
        if inputs is None or outputs is None:
            raise TypeError("a functional model needs inputs= and outputs=: ember.Model(inputs=ember.Input(...), "
                            "outputs=...)")
        graph, modules = _record_graph(inputs, outputs, name)
        self._use_graph(graph, modules)

    def _use_graph(self, graph: dict, modules: dict) -> None:
        self.name, self.graph = graph["name"], graph
        self.layers = nn.ModuleDict(modules)
        self.input_names = [entry["name"] for entry in graph["inputs"]]
        self.output_names = list(graph["output_names"])
        # One input: its shape (no batch axis), as a Sequential has (export and summary use it).
        only = graph["inputs"][0] if len(graph["inputs"]) == 1 else None
        self.input_shape = tuple(only["shape"]) if only and None not in only["shape"] else None

    def forward(self, inputs, *more):
        """The inputs as Keras takes them: one tensor, a list in `input_names` order, or a dict by name
        (or the tensors as arguments in that order)."""
        values = self._bind_inputs([inputs, *more] if more else inputs)
        for node in self.graph["nodes"]:
            call = self.layers[node["layer"]] if "layer" in node else OPS[node["op"]]
            kwargs = _decode(node["kwargs"], values)
            training = kwargs.pop("training", None) if "layer" in node else None  # no context per plain node
            _bind(node["outputs"], call_in_mode(call, training, *_decode(node["args"], values), **kwargs), values)
        return _decode(self.graph["outputs"], values)

    def _bind_inputs(self, x) -> dict:
        names = self.input_names
        if isinstance(x, dict):
            missing, unknown = [n for n in names if n not in x], sorted(set(x) - set(names))
            if missing or unknown:
                raise ValueError(f"this model's inputs are {names}; the dict given "
                                 + (f"lacks {missing}" if missing else "") + (" and " if missing and unknown else "")
                                 + (f"has unknown {unknown}" if unknown else ""))
            return {n: x[n] for n in names}
        given = list(x) if isinstance(x, (list, tuple)) else [x]
        if len(given) != len(names):
            raise ValueError(f"this model takes {len(names)} input{'s' * (len(names) != 1)} ({', '.join(names)}), "
                             f"got {len(given)}: pass a list in that order or a dict by name")
        return dict(zip(names, given))

    # --- saving ---------------------------------------------------------------
    def get_config(self) -> dict:
        layers = []
        for name, module in self.layers.items():
            if not callable(getattr(module, "get_config", None)):
                raise TypeError(f"cannot describe layer {name!r} ({type(module).__name__}) as JSON: only ember layers "
                                "and models can be saved as an architecture; save_weights() works for any model")
            layers.append({"name": name, "class_name": type(module).__name__, "config": module.get_config()})
        return {**self.graph, "layers": layers}

    @classmethod
    def from_config(cls, config: dict) -> "Functional":
        from ember.define import layers as layer_module
        from ember.define.sequential import Sequential

        known = {"Functional": cls, "Sequential": Sequential}
        modules = {}
        for entry in config["layers"]:
            layer_cls = known.get(entry["class_name"]) or getattr(layer_module, entry["class_name"], None)
            if not (isinstance(layer_cls, type) and issubclass(layer_cls, (layer_module.Layer, Model))):
                raise ValueError(f"unknown layer class {entry['class_name']!r} in the saved graph")
            modules[entry["name"]] = layer_cls.from_config(entry["config"])
        model = cls.__new__(cls)
        Model.__init__(model)
        model._use_graph({k: v for k, v in config.items() if k != "layers"}, modules)
        return model

    # --- inspection -----------------------------------------------------------
    def graph_rows(self) -> list:
        """(name, type, output shape, params, connected to) per input and call, as Keras' summary shows them."""
        rows, counted, calls, where = [], set(), {}, {}
        for entry in self.graph["inputs"]:
            rows.append((entry["name"], "InputLayer", (None, *entry["shape"]), 0, "-"))
            where[entry["name"]] = f"{entry['name']}[0][0]"
        for node in self.graph["nodes"]:
            name = node.get("layer") or node["op"]
            call = calls[name] = calls.get(name, -1) + 1
            outputs = _refs(node["outputs"])
            for index, ref in enumerate(outputs):
                where[ref] = f"{name}[{call}][{index}]"
            module = self.layers[name] if "layer" in node else None
            params = 0
            if module is not None and name not in counted:
                counted.add(name)
                params = sum(p.numel() for p in module.parameters())
            shape = (None, *node["shapes"][0]) if node["shapes"] else None
            rows.append((name, type(module).__name__ if module is not None else f"ops.{node['op']}", shape, params,
                         ", ".join(where[ref] for ref in _refs((node["args"], node["kwargs"])))))
        return rows


def _record_graph(inputs, outputs, name):
    """The graph between `inputs` and `outputs` (symbolic tensors, alone or in lists or dicts) and its modules."""
    input_tensors = flatten(inputs)
    if not input_tensors or any(t.node.input_name is None for t in input_tensors):
        raise TypeError(f"inputs must be tensors made by ember.Input (alone, in a list or a dict), got {inputs!r}")
    output_tensors = flatten(outputs)
    if not output_tensors:
        raise TypeError(f"outputs must be symbolic tensors made from the inputs by layer calls, got {outputs!r}")
    order, seen, given = [], set(), {id(t.node) for t in input_tensors}

    def visit(tensor, path):
        node = tensor.node
        if id(node) in seen:
            return
        if node.input_name is not None and id(node) not in given:
            raise ValueError(f"the output {path} depends on the input {node.input_name!r}, which is not in this "
                             "model's inputs: add it to inputs=")
        seen.add(id(node))
        for arg in flatten((node.args, node.kwargs)):
            visit(arg, path)
        if node.input_name is None:
            order.append(node)

    for index, tensor in enumerate(output_tensors):
        visit(tensor, tensor.name)
    order.sort(key=lambda node: node.created)  # as written (a converted Keras model: Keras' layer order)
    unused = [t.node.input_name for t in input_tensors if id(t.node) not in seen]
    if unused:
        raise ValueError(f"the input(s) {unused} reach no output: every input must be used by the outputs")
    refs = {id(t): t.node.input_name for t in input_tensors}
    modules, module_names = {}, {}
    nodes = []
    for node in order:
        for tensor in flatten(node.outputs):
            refs[id(tensor)] = f"t{len(refs)}"
        encoded = {"args": _encode(node.args, refs), "kwargs": _encode(node.kwargs, refs),
                   "outputs": _encode(node.outputs, refs), "shapes": [list(t.shape[1:]) for t in flatten(node.outputs)]}
        if node.module is None:
            nodes.append({"op": node.op, **encoded})
            continue
        if id(node.module) not in module_names:
            module_names[id(node.module)] = _unique(getattr(node.module, "name", None)
                                                    or default_name(node.module), modules)
            modules[module_names[id(node.module)]] = node.module
            if getattr(node.module, "name", "") is None:
                node.module.name = module_names[id(node.module)]
        nodes.append({"layer": module_names[id(node.module)], **encoded})
    output_names = list(outputs) if isinstance(outputs, dict) else [
        next((n.get("layer") or n["op"] for n in nodes if refs[id(t)] in _refs(n["outputs"])), refs[id(t)])
        for t in output_tensors]
    graph = {
        "name": name or "functional",
        "inputs": [{"name": t.node.input_name, "shape": list(t.shape[1:]), "dtype": str(t.dtype).replace("torch.", "")}
                   for t in input_tensors],
        "nodes": nodes, "outputs": _encode(outputs, refs), "output_names": output_names,
    }
    return graph, modules


def _unique(base: str, taken: dict) -> str:
    base = base.replace(".", "_")  # a '.' cannot name a sub-module
    name, count = base, 0
    while name in taken:
        count += 1
        name = f"{base}_{count}"
    return name


# --- arguments as JSON: tensors by reference, constants as they are --------------------------------
def _encode(value, refs):
    if isinstance(value, SymbolicTensor):
        return {"tensor": refs[id(value)]}
    if isinstance(value, list):
        return [_encode(v, refs) for v in value]
    if isinstance(value, tuple):
        return {"tuple": [_encode(v, refs) for v in value]}
    if isinstance(value, dict):
        return {"dict": {str(k): _encode(v, refs) for k, v in value.items()}}
    if isinstance(value, slice):
        return {"slice": [value.start, value.stop, value.step]}
    if value is Ellipsis:
        return {"ellipsis": True}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"a functional model can record tensors and Python numbers, strings, lists, tuples, dicts and "
                    f"slices as call arguments, not {type(value).__name__}: write a Model subclass for this step")


def _decode(value, tensors):
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if isinstance(value, dict):
        if "tensor" in value:
            return tensors[value["tensor"]]
        if "tuple" in value:
            return tuple(_decode(v, tensors) for v in value["tuple"])
        if "dict" in value:
            return {k: _decode(v, tensors) for k, v in value["dict"].items()}
        if "slice" in value:
            return slice(*value["slice"])
        return Ellipsis
    return value


def _bind(spec, value, tensors) -> None:
    """Store a call's outputs under the references `spec` (as `_encode` wrote them) names."""
    if isinstance(spec, dict) and "tensor" in spec:
        tensors[spec["tensor"]] = value
    elif isinstance(spec, list) or (isinstance(spec, dict) and "tuple" in spec):
        for part, item in zip(spec if isinstance(spec, list) else spec["tuple"], value):
            _bind(part, item, tensors)
    elif isinstance(spec, dict) and "dict" in spec:
        for key, part in spec["dict"].items():
            _bind(part, value[key], tensors)


def _refs(spec) -> list:
    """The tensor references inside an encoded value, in order."""
    if isinstance(spec, dict) and "tensor" in spec:
        return [spec["tensor"]]
    if isinstance(spec, dict):
        parts = spec.get("tuple") or list(spec.get("dict", {}).values())
    elif isinstance(spec, (list, tuple)):
        parts = spec
    else:
        return []
    return [ref for part in parts for ref in _refs(part)]


register_config_class("functional", Functional)
