"""BatchNorm, LayerNorm and GroupNormalization with Keras' defaults (epsilon 1e-3, momentum 0.99), and
UnitNormalization (each vector scaled to length 1)."""
import torch
import torch.nn.functional as F
from torch import nn

from ember.config import normalize_data_format
from ember.define.layers.base import Layer


class BatchNorm(Layer):
    """Normalises over the channel axis: axis 1 for channels_first images, the last axis
    for channels_last images and for (batch, features) inputs.

    `momentum` is Keras' (weight of the old running value); torch's is `1 - momentum`. In training
    the running statistics move as Keras moves them (toward the biased batch variance). A frozen
    one (`trainable = False`) normalizes with its running statistics in training too, as in Keras.
    """

    supports_masking = True

    def __init__(self, momentum=0.99, epsilon=1e-3, center=True, scale=True, *, data_format=None,
                 input_shape=None, name=None):
        super().__init__(input_shape=input_shape, name=name)
        self.momentum, self.epsilon = float(momentum), float(epsilon)
        self.center, self.scale = center, scale
        self.data_format = normalize_data_format(data_format)

    def _channel_axis(self, rank):
        return 1 if rank > 2 and self.data_format == "channels_first" else rank - 1

    def build(self, input_shape):
        n = int(input_shape[self._channel_axis(len(input_shape) + 1) - 1])
        self.num_features = n
        self.weight = nn.Parameter(torch.ones(n)) if self.scale else None
        self.bias = nn.Parameter(torch.zeros(n)) if self.center else None
        self.register_buffer("running_mean", torch.zeros(n))
        self.register_buffer("running_var", torch.ones(n))

    def forward(self, x):
        axis = self._channel_axis(x.dim())
        if x.shape[axis] != self.num_features:
            raise self.shape_error(f"{self.num_features} channels on axis {axis}", tuple(x.shape))
        moved = x.movedim(axis, 1) if axis != 1 else x
        # In training torch updates its running_var argument in place and keeps it for the backward
        # pass: it gets a copy, from which Keras' update is then written into the buffer.
        batch_statistics = self.training and self.trainable
        running_var = self.running_var.clone() if batch_statistics else self.running_var
        y = F.batch_norm(moved, self.running_mean, running_var, self.weight, self.bias,
                         batch_statistics, 1.0 - self.momentum, self.epsilon)
        if batch_statistics:
            self._use_biased_variance(running_var, x.numel() // self.num_features)
        return y.movedim(1, axis) if axis != 1 else y

    @torch.no_grad()
    def _use_biased_variance(self, torch_update, count):
        """Keras moves the running variance toward the biased batch variance, torch toward the
        unbiased one (count / (count - 1) times it): from torch's m * old + (1 - m) * unbiased,
        Keras' m * old + (1 - m) * biased is (count - 1) / count of it plus m * old / count.
        Work on the C running values, not a second pass over the batch."""
        self.running_var.mul_(self.momentum / count).add_(torch_update, alpha=(count - 1) / count)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format}


class LayerNorm(Layer):
    supports_masking = True

    def __init__(self, epsilon=1e-3, center=True, scale=True, *, input_shape=None, name=None):
        super().__init__(input_shape=input_shape, name=name)
        self.epsilon, self.center, self.scale = float(epsilon), center, scale

    def build(self, input_shape):
        n = int(input_shape[-1])
        self.normalized_shape = (n,)
        self.weight = nn.Parameter(torch.ones(n)) if self.scale else None
        self.bias = nn.Parameter(torch.zeros(n)) if self.center else None

    def forward(self, x):
        if x.shape[-1] != self.normalized_shape[0]:
            raise self.shape_error(("batch", "...", self.normalized_shape[0]), tuple(x.shape))
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.epsilon)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


class RMSNormalization(Layer):
    """`x / sqrt(mean(x**2) + epsilon) * scale` over the last axis (Keras' layer with its default axis)."""

    supports_masking = True

    def __init__(self, epsilon=1e-6, *, input_shape=None, name=None):
        super().__init__(input_shape=input_shape, name=name)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        self.scale = nn.Parameter(torch.ones(int(input_shape[-1])))

    def forward(self, x):
        if x.shape[-1] != self.scale.shape[0]:
            raise self.shape_error(("batch", "...", self.scale.shape[0]), tuple(x.shape))
        return F.rms_norm(x, self.scale.shape, self.scale, self.epsilon)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


class GroupNormalization(Layer):
    """Normalises each sample over groups of `groups` consecutive channels (and every other axis) with
    the group's mean and biased variance, then scales and shifts per channel: Keras' layer, on the
    channel axis `axis` (counted with the batch axis)."""

    supports_masking = True

    def __init__(self, groups=32, axis=-1, epsilon=1e-3, center=True, scale=True, *, input_shape=None, name=None):
        super().__init__(input_shape=input_shape, name=name)
        self.groups, self.axis, self.epsilon = int(groups), int(axis), float(epsilon)
        self.center, self.scale = center, scale

    def build(self, input_shape):
        rank = len(input_shape) + 1
        if not -rank <= self.axis < rank or self.axis % rank == 0:
            raise self.shape_error(f"a channel axis {self.axis} other than the batch axis", ("batch",) + input_shape)
        self.channel_axis = self.axis % rank
        n = int(input_shape[self.channel_axis - 1])
        if n % self.groups:
            raise self.shape_error(f"channels on axis {self.axis} divisible by groups={self.groups}",
                                   ("batch",) + tuple(input_shape))
        self.num_channels = n
        self.weight = nn.Parameter(torch.ones(n)) if self.scale else None
        self.bias = nn.Parameter(torch.zeros(n)) if self.center else None

    def forward(self, x):
        if x.shape[self.channel_axis] != self.num_channels:
            raise self.shape_error(f"{self.num_channels} channels on axis {self.channel_axis}", tuple(x.shape))
        y = F.group_norm(x.movedim(self.channel_axis, 1), self.groups, self.weight, self.bias, self.epsilon)
        return y.movedim(1, self.channel_axis)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


class UnitNormalization(Layer):
    """`x / ||x||` along `axis` (an int or a list, counted with the batch axis), as Keras:
    `x * min(rsqrt(sum(x ** 2)), 1e12)`, so a zero vector stays zero."""

    supports_masking = True

    def __init__(self, axis=-1, *, input_shape=None, name=None):
        super().__init__(input_shape=input_shape, name=name)
        self.axis = int(axis) if isinstance(axis, int) else tuple(int(a) for a in axis)

    def forward(self, x):
        inverse_norm = x.square().sum(dim=self.axis, keepdim=True).rsqrt().clamp_max(1e12)
        return x * inverse_norm

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


BatchNormalization = BatchNorm
LayerNormalization = LayerNorm
