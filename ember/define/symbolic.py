"""Symbolic tensors: what a functional model is written with (`ember.Input`, layer calls, operators).

`Input(shape)` returns a `SymbolicTensor`: a shape (None for the batch axis), a dtype and the
`Node` that makes it. Calling a layer, a model or an `ember.ops` function on symbolic tensors
runs nothing: it records a `Node` and infers the outputs' shapes by running the call on fake
tensors (no compute, no memory); `ember.Model(inputs, outputs)` then turns the recorded graph
into a module (`functional.py`). Shapes are checked as each call is recorded, so a wrong shape
is an error at the line that wrote it.
"""
import itertools
from dataclasses import dataclass, field

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from ember.define.masking import output_mask, takes_mask, with_argument_masks
from ember.errors import ShapeError

_FAKE_BATCH = 2  # the batch size shapes are inferred with; outputs keep it as None
_counter = itertools.count()  # automatic tensor names
_created = itertools.count()  # the order nodes were recorded in


@dataclass(eq=False)
class Node:
    """One recorded call: `module(*args, **kwargs)`, or the `ember.ops` function `op`; an Input has neither."""
    module: object = None
    op: str | None = None
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    outputs: object = None  # the SymbolicTensor(s) it returned, in the structure the call returned them
    input_name: str | None = None
    created: int = field(default_factory=lambda: next(_created))  # calls are recorded in the order written


class SymbolicTensor:
    """A placeholder for the tensors a model will see: `shape` includes the batch axis (None).
    `mask`: the symbolic (batch, steps) mask of its real steps, if a layer made one (masking.py)."""

    def __init__(self, shape, dtype, node, name=None):
        self.shape, self.dtype, self.node = tuple(shape), dtype, node
        self.name = name or f"tensor_{next(_counter)}"
        self.mask = None

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self):
        shape = ", ".join("None" if d is None else str(d) for d in self.shape)
        return f"<SymbolicTensor shape=({shape}), dtype={str(self.dtype).replace('torch.', '')}, name={self.name}>"

    def __bool__(self):
        raise TypeError("a symbolic tensor has no value: Python `if`/`and`/`or` cannot decide on it while the "
                        "model is being defined (use ember.ops, or write a Model subclass with a forward)")

    # Operators record the `ember.ops` function of the same meaning.
    def __add__(self, other): return call_op("add", self, other)
    def __radd__(self, other): return call_op("add", other, self)
    def __sub__(self, other): return call_op("subtract", self, other)
    def __rsub__(self, other): return call_op("subtract", other, self)
    def __mul__(self, other): return call_op("multiply", self, other)
    def __rmul__(self, other): return call_op("multiply", other, self)
    def __truediv__(self, other): return call_op("divide", self, other)
    def __rtruediv__(self, other): return call_op("divide", other, self)
    def __matmul__(self, other): return call_op("matmul", self, other)
    def __rmatmul__(self, other): return call_op("matmul", other, self)
    def __pow__(self, other): return call_op("power", self, other)
    def __neg__(self): return call_op("negative", self)
    def __abs__(self): return call_op("absolute", self)
    def __getitem__(self, key): return call_op("getitem", self, key)


def Input(shape, name=None, dtype=None, batch_size=None):  # noqa: N802 (Keras' spelling)
    """A model input: `shape` without the batch axis, as `keras.Input`. `dtype`: "float32" (default),
    "int64", "int32", ... or a torch dtype. Give it to `ember.Model(inputs=..., outputs=...)`, or
    first to a `Sequential`."""
    if isinstance(shape, int):
        shape = (shape,)
    if not (isinstance(shape, (tuple, list)) and all(d is None or (isinstance(d, int) and d > 0) for d in shape)):
        raise ValueError(f"Input shape must be a tuple of positive ints (None for a free size), without the batch "
                         f"axis, e.g. (28, 28, 1); got {shape!r}")
    node = Node(input_name=name)
    tensor = SymbolicTensor((batch_size,) + tuple(shape), torch_dtype(dtype or "float32"), node, name)
    node.input_name, node.outputs = tensor.name, tensor
    return tensor


def torch_dtype(dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    found = getattr(torch, str(dtype).replace("torch.", ""), None)
    if not isinstance(found, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}: expected a name such as 'float32', 'int64' or a torch.dtype")
    return found


def holds_symbolic(value) -> bool:
    """Whether `value` is a symbolic tensor or a list, tuple or dict holding one (checked one level deep:
    this runs on every layer call)."""
    if type(value) is SymbolicTensor:
        return True
    if type(value) in (list, tuple):
        return any(type(v) is SymbolicTensor for v in value)
    return type(value) is dict and any(type(v) is SymbolicTensor for v in value.values())


def call_module(module, args: tuple, kwargs: dict):
    """Record `module(*args, **kwargs)` on symbolic tensors; returns its symbolic outputs, carrying the
    mask the module gives them (masking.py)."""
    from ember.define.layers.base import Layer

    first = args[0]
    carried = getattr(first, "mask", None)
    if isinstance(first, (list, tuple)) and any(getattr(t, "mask", None) is not None for t in first):
        carried = [getattr(t, "mask", None) for t in first]  # a merge layer's: one per input
    # Keras' rule: a call on one tensor argument gets its mask as `mask=`; a call on several (an RNN's
    # initial_state, attention's value) gets `<argument>_mask=` where the layer has one, and no `mask=`.
    one_argument = sum(bool(flatten(value)) for value in (*args, *kwargs.values())) == 1
    if carried is not None and "mask" not in kwargs and takes_mask(module) and one_argument:
        kwargs = {**kwargs, "mask": carried}
    kwargs = with_argument_masks(module, args, kwargs)
    shapes = module.call_input_shape(*args, **kwargs) if getattr(module, "call_input_shape", None) \
        else map_structure(lambda t: t.shape[1:], first)
    if isinstance(module, Layer) and not isinstance(first, dict):
        module.check_input_shape(shapes)  # with free sizes (None), the layer says what it cannot take
        if not module.built:  # real parameters now (a fake call would make fake ones); free sizes do not size them
            module.build_for(map_structure(_fill_free_sizes, shapes, leaf=tuple))
    elif callable(getattr(module, "build", None)) and getattr(module, "input_shape", "") is None:
        module.build(_fill_free_sizes(shapes))  # a Sequential without an input shape yet
    outputs = _record(Node(module=module, args=args, kwargs=kwargs), module, _layer_name(module))
    mask = output_mask(module, first, kwargs.get("mask", carried))
    if isinstance(outputs, SymbolicTensor):
        outputs.mask = mask
    elif mask is not None:  # Bidirectional(merge_mode=None): one mask per output
        for output, part in zip(outputs, mask):
            output.mask = part
    return outputs


def call_op(name: str, *args, **kwargs):
    """Record the `ember.ops` function `name` on symbolic tensors."""
    from ember.define.ops import OPS

    return _record(Node(op=name, args=args, kwargs=kwargs), OPS[name], name)


def _record(node: Node, function, what: str):
    try:
        outputs = _fake_call(function, node.args, node.kwargs, free_size=2)
        if any(d is None for t in flatten((node.args, node.kwargs)) for d in t.shape[1:]):
            # A size the input leaves free is free in the output too where a second size changes it.
            other = flatten(_fake_call(function, node.args, node.kwargs, free_size=3), leaf=torch.Tensor)
            shapes = iter([tuple(d if d == e else None for d, e in zip(t.shape, u.shape))
                           for t, u in zip(flatten(outputs, leaf=torch.Tensor), other)])
        else:
            shapes = iter([tuple(t.shape) for t in flatten(outputs, leaf=torch.Tensor)])
    except ShapeError:
        raise
    except (RuntimeError, ValueError, TypeError, IndexError) as error:
        received = map_structure(lambda t: t.shape, node.args[0] if node.args else node.kwargs)
        expected = getattr(node.module, "input_shape", None)
        raise ShapeError(what, type(node.module).__name__ if node.module is not None else f"ops.{node.op}",
                         (None, *expected) if expected else "inputs it can take", received,
                         str(error).splitlines()[0]) from None
    node.outputs = map_structure(lambda t: SymbolicTensor((None,) + next(shapes)[1:], t.dtype, node), outputs,
                                 leaf=torch.Tensor)
    return node.outputs


def _fake_call(function, args, kwargs, free_size: int):
    modules = [function] if isinstance(function, torch.nn.Module) else []
    was_training = [m.training for m in modules]
    for m in modules:
        m.eval()  # batch statistics and dropout are irrelevant to shapes
    try:
        # On the device of the module's parameters (the meta device while from_keras builds).
        device = next((t.device for m in modules for t in itertools.chain(m.parameters(), m.buffers())), None)
        with FakeTensorMode(allow_non_fake_inputs=True) as mode, torch.no_grad():
            kwargs = {k: v for k, v in kwargs.items() if not (modules and k == "training")}  # eval decides shapes
            fake = map_structure(lambda t: mode.from_tensor(torch.zeros(
                (_FAKE_BATCH, *_fill_free_sizes(t.shape[1:], free_size)), dtype=t.dtype, device=device)),
                (args, kwargs))
            return function(*fake[0], **fake[1])
    finally:
        for m, mode_was in zip(modules, was_training):
            m.train(mode_was)


def _fill_free_sizes(shape: tuple, size: int = 2) -> tuple:
    return tuple(size if d is None else d for d in shape)


def map_structure(fn, value, leaf=SymbolicTensor):
    """`value` with every `leaf` inside (lists, tuples, dicts, nested) replaced by `fn(leaf)`."""
    if isinstance(value, leaf):
        return fn(value)
    if isinstance(value, (list, tuple)):
        return type(value)(map_structure(fn, v, leaf) for v in value)
    if isinstance(value, dict):
        return {k: map_structure(fn, v, leaf) for k, v in value.items()}
    return value


def flatten(value, leaf=SymbolicTensor) -> list:
    """Every `leaf` inside `value`, in order."""
    found = []
    map_structure(found.append, value, leaf)
    return found


def _layer_name(module) -> str:
    return getattr(module, "name", None) or type(module).__name__
