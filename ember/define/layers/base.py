"""`Layer`: a torch module that builds its parameters once it knows its input shape.

Shapes in ember exclude the batch axis: `Conv2D(..., input_shape=(1, 28, 28))`.
A layer is built either by `Sequential` at construction (the input shape is given
once, on the first layer) or lazily on its first call when used inside a plain
`nn.Module`.

As in Keras, `layer.trainable = False` freezes its weights (fit leaves them as they are; a
BatchNormalization also stays in inference mode), and `layer(x, training=False)` runs one call
in inference mode (ember/define/modes.py).
"""
import torch
from torch import nn

from ember.config import normalize_data_format
from ember.define import regularizers
from ember.define.config_record import record_init_arguments
from ember.define.modes import call_in_mode
from ember.define.symbolic import call_module, holds_symbolic
from ember.errors import ShapeError


class Layer(nn.Module):
    supports_masking = False  # True: the output keeps the input's steps, so it keeps their mask (masking.py)
    # A layer called on several tensors (attention's query, value, key) sets a function of the call's
    # arguments giving the shape it is built for; others are built for their first argument's shape.
    call_input_shape = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        record_init_arguments(cls)

    def __init__(self, *, input_shape=None, name=None):
        super().__init__()
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.name = name
        self.built = False
        self.output_shape = None
        self._trainable = True
        self.weight_regularizers = {}  # parameter name -> regularizers.L1L2, see regularize()
        self.activity_regularizer = None
        self._activity_penalties = []

    # --- regularization ---------------------------------------------------------
    def regularize(self, parameter: str, regularizer) -> "Layer":
        """Add `regularizer`'s penalty of the parameter named `parameter` ("weight", "bias", a
        sub-module's "input_conv.weight") to the training loss, as Keras' kernel_regularizer does."""
        self.weight_regularizers[parameter] = regularizers.get(regularizer)
        return self

    def take_activity_penalties(self) -> list:
        """The activity penalties of this layer's calls since the last take."""
        taken, self._activity_penalties = self._activity_penalties, []
        return taken

    # --- freezing ---------------------------------------------------------------
    @property
    def trainable(self) -> bool:
        """False: fit leaves this layer's weights (and a BatchNormalization's statistics) as they are."""
        return self._trainable

    @trainable.setter
    def trainable(self, value) -> None:
        self._trainable = bool(value)
        for parameter in self.parameters():
            parameter.requires_grad_(self._trainable)

    # --- building -------------------------------------------------------------
    def post_init(self):
        """Runs after the outermost __init__: a layer that knows its input shape builds now."""
        if self.input_shape is not None and not self.built:
            self.build_for(self.input_shape)

    def build(self, input_shape: tuple) -> None:
        """Create parameters for inputs of `input_shape` (no batch axis). Override if needed."""

    def build_for(self, input_shape) -> tuple:
        """Build for `input_shape` and return the output shape (no batch axis)."""
        input_shape = tuple(input_shape)
        if not self.built:
            self.check_input_shape(input_shape)
            with torch.inference_mode(False):  # built by a first call under inference_mode, still trainable
                self.build(input_shape)
            self.built = True
            self.trainable = self._trainable  # parameters made by build follow the layer's setting
            self.input_shape = input_shape
        self.output_shape = tuple(self.compute_output_shape(input_shape))
        return self.output_shape

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        from ember.define.shapes import infer_output_shape

        return infer_output_shape(self, input_shape)

    def __call__(self, x, *args, **kwargs):
        if holds_symbolic(x):  # defining a functional model: record the call, infer shapes
            return call_module(self, (x, *args), kwargs)
        if "training" in kwargs:  # Keras' per-call mode
            return call_in_mode(self, kwargs.pop("training"), x, *args, **kwargs)
        if not self.built and self.call_input_shape is not None:
            self.build_for(self.call_input_shape(x, *args, **kwargs))
        elif not self.built and isinstance(x, torch.Tensor):
            self.build_for(tuple(x.shape[1:]))
        outputs = super().__call__(x, *args, **kwargs)
        if self.activity_regularizer is not None and self.training and torch.is_grad_enabled():  # a training step's
            for output in outputs if isinstance(outputs, (list, tuple)) else [outputs]:
                # Keras 3 divides by the batch size, so the strength does not depend on it
                self._activity_penalties.append(self.activity_regularizer(output) / max(output.shape[0], 1))
        return outputs

    def compute_mask(self, inputs, mask):
        """The mask of this layer's output for `inputs` with `mask` (None: no mask); see masking.py."""
        return mask if self.supports_masking else None

    # --- checks ---------------------------------------------------------------
    def check_input_shape(self, input_shape: tuple) -> None:
        """Raise ShapeError when `input_shape` cannot be this layer's input. Override."""

    def shape_error(self, expected, received) -> ShapeError:
        return ShapeError(self.name or type(self).__name__, type(self).__name__, expected, received)

    def get_config(self) -> dict:
        """The constructor arguments, JSON-serialisable, to rebuild this layer."""
        config = dict(getattr(self, "_init_arguments", None) or {})
        config["name"] = self.name
        if self.input_shape is not None:
            config["input_shape"] = list(self.input_shape)
        if not self.trainable:
            config["trainable"] = False
        if self.weight_regularizers:
            config["regularizers"] = {name: r.get_config() for name, r in self.weight_regularizers.items()}
        if self.activity_regularizer is not None:
            config["activity_regularizer"] = self.activity_regularizer.get_config()
        return config

    @classmethod
    def from_config(cls, config: dict) -> "Layer":
        """The layer `get_config()` describes."""
        config = dict(config)
        trainable = config.pop("trainable", True)
        weight_regularizers = config.pop("regularizers", None) or {}
        activity_regularizer = regularizers.get(config.pop("activity_regularizer", None))
        layer = cls(**config)
        layer.trainable = trainable
        for name, regularizer in weight_regularizers.items():
            layer.regularize(name, regularizer)
        layer.activity_regularizer = activity_regularizer
        return layer

    def extra_repr(self) -> str:
        shown = {k: v for k, v in (getattr(self, "_init_arguments", None) or {}).items() if k != "name"}
        return ", ".join(f"{k}={v!r}" for k, v in shown.items())


class ImageLayer(Layer):
    """A layer whose channel axis depends on `data_format`.

    With "channels_last" the layer takes and returns NHWC tensors (Keras' layout) but
    computes in PyTorch's NCHW order through `permute`, which is a free view: the
    activations then sit in the channels_last memory format that the CPU and GPU
    convolution kernels run fastest on.
    """

    spatial_dims = 2

    def __init__(self, *, data_format=None, input_shape=None, name=None):
        super().__init__(input_shape=input_shape, name=name)
        self.data_format = normalize_data_format(data_format)
        self.channels_last = self.data_format == "channels_last"

    def spatial_names(self) -> tuple:
        """The spatial axes' names in error messages: ("L",), ("H", "W") or ("D", "H", "W")."""
        return {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}[self.spatial_dims]

    def channels(self, input_shape) -> int:
        return input_shape[-1] if self.channels_last else input_shape[0]

    def to_channels_first(self, x):
        if not self.channels_last:
            return x
        return x.movedim(-1, 1)

    def from_channels_first(self, y):
        if not self.channels_last:
            return y
        return y.movedim(1, -1)

    def check_input_shape(self, input_shape):
        rank = self.spatial_dims + 1
        if len(input_shape) != rank:
            layout = ", ".join(self.spatial_names())
            expected = f"(batch, {layout}, channels)" if self.channels_last else f"(batch, channels, {layout})"
            raise self.shape_error(expected, ("batch",) + tuple(input_shape))

    def get_config(self):
        config = super().get_config()
        config["data_format"] = self.data_format
        return config


def default_name(module) -> str:
    """The name a container gives an unnamed layer, as Keras does: its class name in snake case."""
    name = type(module).__name__
    return "".join(f"_{c.lower()}" if c.isupper() and i and name[i - 1].islower() else c.lower()
                   for i, c in enumerate(name))
