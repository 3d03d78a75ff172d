"""Permute (reorders the non-batch axes, as Keras' `Permute(dims)`: dims count from 1), RepeatVector
(a (batch, features) vector repeated n times: (batch, n, features)) and Identity."""
from ember.define.layers.base import Layer


class Permute(Layer):
    def __init__(self, dims, *, input_shape=None, name=None):
        super().__init__(input_shape=input_shape, name=name)
        self.dims = tuple(int(d) for d in dims)
        if sorted(self.dims) != list(range(1, len(self.dims) + 1)):
            raise ValueError(f"Permute dims must be a permutation of 1..{len(self.dims)}, got {dims!r}")

    def check_input_shape(self, input_shape):
        if len(input_shape) != len(self.dims):
            raise self.shape_error(f"{len(self.dims)} axes besides the batch", ("batch",) + tuple(input_shape))

    def forward(self, x):
        return x.permute(0, *self.dims)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[d - 1] for d in self.dims)


class RepeatVector(Layer):
    def __init__(self, n, *, input_shape=None, name=None):
        super().__init__(input_shape=input_shape, name=name)
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"RepeatVector's n must be a positive integer, got {n!r}")
        self.n = n

    def check_input_shape(self, input_shape):
        if len(input_shape) != 1:
            raise self.shape_error("(batch, features)", ("batch",) + tuple(input_shape))

    def forward(self, x):
        return x.unsqueeze(1).expand(x.shape[0], self.n, *x.shape[1:])

    def compute_output_shape(self, input_shape):
        return (self.n, *input_shape)


class Identity(Layer):
    """Its input, unchanged (and its mask)."""

    supports_masking = True

    def forward(self, x):
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)
