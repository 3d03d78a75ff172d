"""Keras 3 operations in a model graph -> `ember.ops` calls.

Keras 3 saves `x + y`, `x * 0.5` and `keras.ops.*` calls on symbolic tensors as graph nodes:
layers whose `module` is `keras.src.ops.<...>`, whose config holds the operation's options
(`axis`, `keepdims`) and whose inbound node holds its operands, tensors or constants
(`{"args": [<tensor>, 3]}`). A converted model calls the `ember.ops` function of the same
meaning, which a functional model records by name (so it saves as JSON and loads without code).
"""
from dataclasses import dataclass

from ember.keras.layers import KERAS_LAYERS, UnsupportedConfig
from ember.keras.model_config import DTYPES


@dataclass(frozen=True)
class KerasOperation:
    op: str  # the ember.ops function
    options: tuple = ()  # (Keras config key, ember.ops keyword): the options passed on
    elementwise: bool = False  # computes on tensors of any layout when its tensor operands share one shape


def _elementwise(op, options=()):
    return KerasOperation(op, options, elementwise=True)


def _reduction(op):
    return KerasOperation(op, (("axis", "axis"), ("keepdims", "keepdims")))


KERAS_OPERATIONS = {
    **{name: _elementwise(op) for name, op in {
        "Add": "add", "Subtract": "subtract", "Multiply": "multiply", "TrueDivide": "divide", "Divide": "divide",
        "Power": "power", "Negative": "negative", "Absolute": "absolute", "Exp": "exp", "Log": "log",
        "Sqrt": "sqrt", "Square": "square", "Tanh": "tanh", "Sigmoid": "sigmoid", "Relu": "relu", "Relu6": "relu6",
        "Silu": "silu", "HardSigmoid": "hard_sigmoid", "HardSilu": "hard_silu", "Maximum": "maximum",
        "Minimum": "minimum", "NotEqual": "not_equal", "LogicalAnd": "logical_and", "LogicalOr": "logical_or",
        "LogicalNot": "logical_not"}.items()},
    "LeakyRelu": _elementwise("leaky_relu", (("negative_slope", "negative_slope"),)),
    "Gelu": _elementwise("gelu", (("approximate", "approximate"),)),
    **{name: _reduction(name.lower()) for name in ("Any", "All", "Mean", "Sum", "Max", "Min")},
    "Matmul": KerasOperation("matmul"),
    "Reshape": KerasOperation("reshape", (("newshape", "new_shape"),)),
    "Transpose": KerasOperation("transpose", (("axes", "axes"),)),
    "ExpandDims": KerasOperation("expand_dims", (("axis", "axis"),)),
    "Squeeze": KerasOperation("squeeze", (("axis", "axis"),)),
    "Softmax": KerasOperation("softmax", (("axis", "axis"),)),
    "Concatenate": KerasOperation("concatenate", (("axis", "axis"),)),
    "Stack": KerasOperation("stack", (("axis", "axis"),)),
    "Cast": KerasOperation("cast", (("dtype", "dtype"),)),
    # Keras writes the masks of merge layers with these (`logical_or(expand_dims(mask), zeros_like(x))`).
    "ZerosLike": KerasOperation("zeros_like", (("dtype", "dtype"),)),
    "OnesLike": KerasOperation("ones_like", (("dtype", "dtype"),)),
    "ConvertToTensor": KerasOperation("convert_to_tensor", (("dtype", "dtype"),), elementwise=True),
    "GetItem": KerasOperation("getitem"),
}


def is_operation(entry) -> bool:
    """Whether a config entry is a Keras operation rather than a layer (`Add`, `Multiply`,
    `Reshape`... name both). Legacy `.h5` files drop `module`; there a layer's config holds the
    options every Keras layer has (`trainable`), an operation's only its name and arguments. A few
    Keras layers (SpatialDropout2D) leave `trainable` out: a layer class ember converts that names
    no operation is a layer either way."""
    if "module" in entry:  # None for custom layers in .keras files
        return str(entry["module"]).startswith("keras.src.ops.")
    class_name = entry["class_name"]
    if class_name == "InputLayer" or class_name in KERAS_LAYERS and class_name not in KERAS_OPERATIONS:
        return False
    return "trainable" not in entry["config"]


def operation_call(class_name, config, args):
    """(ember.ops name, positional arguments, keyword options) for one Keras operation node."""
    spec = KERAS_OPERATIONS[class_name]
    options = {keyword: config[key] for key, keyword in spec.options if key in config}
    if class_name == "Gelu":  # Keras' gelu is the tanh approximation unless told otherwise
        options["approximate"] = "tanh" if options.get("approximate", True) else "none"
    if class_name == "ConvertToTensor" and (config.get("sparse") or config.get("ragged")):
        raise UnsupportedConfig("ConvertToTensor to a sparse or ragged tensor")
    if class_name in ("Max", "Min") and config.get("initial") is not None:
        raise UnsupportedConfig(f"{class_name} with initial={config['initial']!r}")
    if class_name == "Cast" and options.get("dtype") not in DTYPES \
            or class_name in ("ZerosLike", "OnesLike", "ConvertToTensor") \
            and options.get("dtype") not in DTYPES + (None,):
        raise UnsupportedConfig(f"{class_name} to dtype {options.get('dtype')!r}")
    if class_name == "GetItem" and len(args) == 2 and isinstance(args[1], list):
        args = [args[0], tuple(args[1])]  # Keras writes x[a, b]'s key as a list; Python indexes with a tuple
    return spec.op, args, options
