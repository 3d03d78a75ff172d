"""TimeDistributed: one layer applied to every step of a (batch, steps, ...) input, with the same weights.

The steps are folded into the batch, so the layer runs once on (batch * steps, ...). In training, a
layer with batch statistics (BatchNormalization) inside runs step by step instead, as Keras runs it:
each step is normalized with its own statistics and the moving averages move once per step.
A mask of more than (batch, steps) (token ids of (batch, steps, words) through
`Embedding(mask_zero=True)`) reaches the inner layer per step; the output has no mask, as in Keras.
"""
import torch
from torch import nn

from ember.define.layers.base import Layer
from ember.define.layers.normalization import BatchNorm
from ember.define.masking import takes_mask

_BATCH_STATISTICS = (nn.modules.batchnorm._BatchNorm, BatchNorm)


class TimeDistributed(Layer):
    """`layer`: any torch module taking (batch, ...) inputs (an ember layer is built for the step shape)."""

    def __init__(self, layer, *, input_shape=None, name=None):
        super().__init__(input_shape=input_shape, name=name)
        self.layer = _inner_layer(layer)

    def check_input_shape(self, input_shape):
        if len(input_shape) < 2:
            raise self.shape_error("(batch, steps, ...) with at least one axis after the steps",
                                   ("batch",) + tuple(input_shape))

    def build(self, input_shape):
        if isinstance(self.layer, Layer):
            self.layer.build_for(tuple(input_shape[1:]))

    def compute_output_shape(self, input_shape):
        from ember.define.shapes import infer_output_shape

        step = self.layer.build_for(tuple(input_shape[1:])) if isinstance(self.layer, Layer) \
            else infer_output_shape(self.layer, tuple(input_shape[1:]))
        return (input_shape[0],) + tuple(step)

    def forward(self, x, mask=None):
        if x.dim() < 3:
            raise self.shape_error("(batch, steps, ...) with at least one axis after the steps", tuple(x.shape))
        batch, steps = x.shape[:2]
        per_step_mask = mask is not None and mask.dim() > 2 and takes_mask(self.layer)
        if self.training and any(isinstance(m, _BATCH_STATISTICS) for m in self.layer.modules()):
            outputs = [self.layer(x[:, t], **({"mask": mask[:, t]} if per_step_mask else {})) for t in range(steps)]
            return torch.stack(outputs, dim=1)
        folded = x.reshape(batch * steps, *x.shape[2:])
        kwargs = {"mask": mask.reshape(batch * steps, *mask.shape[2:])} if per_step_mask else {}
        y = self.layer(folded, **kwargs)
        return y.reshape(batch, steps, *y.shape[1:])

    def compute_mask(self, inputs, mask):
        return None

    def get_config(self):
        config = super().get_config()
        if not isinstance(self.layer, Layer):
            raise TypeError(f"cannot describe TimeDistributed({type(self.layer).__name__}) as JSON: only ember layers "
                            "can be saved as an architecture; save_weights() works for any model")
        config["layer"] = {"class_name": type(self.layer).__name__, "config": self.layer.get_config()}
        return config


def _inner_layer(value):
    """A module, or the ember layer a saved config {"class_name", "config"} describes."""
    if isinstance(value, dict):
        from ember.define import layers  # the package imports this module: looked up at call time

        layer_cls = getattr(layers, str(value.get("class_name")), None)
        if isinstance(layer_cls, type) and issubclass(layer_cls, Layer):
            return layer_cls.from_config(value.get("config", {}))
    if isinstance(value, nn.Module):
        return value
    raise TypeError(f"TimeDistributed wraps a torch module (or an ember layer's config), got {value!r:.100}")
