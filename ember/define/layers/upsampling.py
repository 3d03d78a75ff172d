"""UpSampling1D/2D/3D: each spatial axis made `size` times longer, by repeating rows ("nearest") or, for
2D images, by bilinear interpolation at pixel centres (`align_corners=False`), as Keras' torch backend
resizes."""
import torch.nn.functional as F

from ember.define.layers.base import ImageLayer
from ember.define.layers.conv import _tuple

INTERPOLATIONS = ("nearest", "bilinear")


class _UpSampling(ImageLayer):
    def __init__(self, size=2, interpolation="nearest", *, data_format=None, input_shape=None, name=None):
        super().__init__(data_format=data_format, input_shape=input_shape, name=name)
        self.size = _tuple(size, self.spatial_dims)
        self.interpolation = str(interpolation).lower()
        if self.interpolation not in INTERPOLATIONS or self.interpolation != "nearest" and self.spatial_dims != 2:
            allowed = INTERPOLATIONS if self.spatial_dims == 2 else ("nearest",)
            raise ValueError(f"interpolation must be one of {allowed}, got {interpolation!r}")

    def forward(self, x):
        if x.dim() != self.spatial_dims + 2:
            raise self.shape_error(f"a {self.spatial_dims + 2}-d batch", tuple(x.shape))
        x = self.to_channels_first(x)
        if self.interpolation == "bilinear":
            size = [length * factor for length, factor in zip(x.shape[2:], self.size)]
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        else:
            for axis, factor in enumerate(self.size, start=2):
                x = x.repeat_interleave(factor, dim=axis)
        return self.from_channels_first(x)


class UpSampling1D(_UpSampling):
    spatial_dims = 1

    def __init__(self, size=2, *, data_format=None, input_shape=None, name=None):
        super().__init__(size, data_format=data_format, input_shape=input_shape, name=name)


class UpSampling2D(_UpSampling):
    spatial_dims = 2


class UpSampling3D(_UpSampling):
    spatial_dims = 3

    def __init__(self, size=2, *, data_format=None, input_shape=None, name=None):
        super().__init__(size, data_format=data_format, input_shape=input_shape, name=name)
