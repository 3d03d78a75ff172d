"""ZeroPadding1D/2D/3D and Cropping1D/2D/3D: zeros added to, or rows cut from, the edges of each spatial axis.

Amounts are given as in Keras: one int for every edge, one int per axis (the same before and
after), or a (before, after) pair per axis: `ZeroPadding2D(((top, bottom), (left, right)))`.
"""
import torch.nn.functional as F

from ember.define.layers.base import ImageLayer


def edge_pairs(value, spatial_dims, argument):
    """Keras' spellings of per-edge amounts -> ((before, after), ...) for each spatial axis."""
    if isinstance(value, int):
        value = (value,) * spatial_dims
    value = tuple(value)
    if spatial_dims == 1 and len(value) == 2 and all(isinstance(v, int) for v in value):
        value = (value,)
    if len(value) != spatial_dims:
        raise ValueError(f"{argument} must be an int, {spatial_dims} ints or {spatial_dims} (before, after) pairs, "
                         f"got {value!r}")
    pairs = tuple((v, v) if isinstance(v, int) else tuple(v) for v in value)
    if any(len(pair) != 2 or not all(isinstance(v, int) and v >= 0 for v in pair) for pair in pairs):
        raise ValueError(f"{argument} must hold non-negative integer (before, after) pairs, got {value!r}")
    return pairs


class _ZeroPadding(ImageLayer):
    def __init__(self, padding=1, *, data_format=None, input_shape=None, name=None):
        super().__init__(data_format=data_format, input_shape=input_shape, name=name)
        self.padding = edge_pairs(padding, self.spatial_dims, "padding")

    def forward(self, x):
        pads = [amount for pair in reversed(self.padding) for amount in pair]  # F.pad: last axis first
        return self.from_channels_first(F.pad(self.to_channels_first(x), pads))


class _Cropping(ImageLayer):
    def __init__(self, cropping=1, *, data_format=None, input_shape=None, name=None):
        super().__init__(data_format=data_format, input_shape=input_shape, name=name)
        self.cropping = edge_pairs(cropping, self.spatial_dims, "cropping")

    def check_input_shape(self, input_shape):
        super().check_input_shape(input_shape)
        spatial = input_shape[:-1] if self.channels_last else input_shape[1:]
        if any(size is not None and before + after >= size for size, (before, after) in zip(spatial, self.cropping)):
            raise self.shape_error(f"spatial sizes larger than the cropping {self.cropping}", tuple(input_shape))

    def forward(self, x):
        x = self.to_channels_first(x)
        for axis, (before, after) in enumerate(self.cropping, start=2):
            x = x.narrow(axis, before, x.shape[axis] - before - after)
        return self.from_channels_first(x)


class ZeroPadding1D(_ZeroPadding):
    spatial_dims = 1


class ZeroPadding2D(_ZeroPadding):
    spatial_dims = 2


class ZeroPadding3D(_ZeroPadding):
    spatial_dims = 3


class Cropping1D(_Cropping):
    spatial_dims = 1


class Cropping2D(_Cropping):
    spatial_dims = 2


class Cropping3D(_Cropping):
    spatial_dims = 3
