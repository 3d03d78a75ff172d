"""Pooling layers, with Keras names and aliases (MaxPooling2D = MaxPool2D, ...)."""
import torch
import torch.nn.functional as F

from ember.define.layers.base import ImageLayer
from ember.define.layers.conv import _tuple, same_pads


class _Pool(ImageLayer):
    def __init__(self, pool_size=2, strides=None, padding="valid", *, data_format=None, input_shape=None, name=None):
        super().__init__(data_format=data_format, input_shape=input_shape, name=name)
        n = self.spatial_dims
        self.pool_size = _tuple(pool_size, n)
        self.strides = _tuple(strides if strides is not None else pool_size, n)
        self.padding = str(padding).lower()
        if self.padding not in ("same", "valid"):
            raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}")

    def forward(self, x):
        if x.dim() != self.spatial_dims + 2:
            raise self.shape_error(f"a {self.spatial_dims + 2}-d batch", tuple(x.shape))
        x = self.to_channels_first(x)
        pads = (same_pads(x.shape[2:], self.pool_size, self.strides, (1,) * self.spatial_dims)
                if self.padding == "same" else [])
        y = self.pool_padded(x, pads) if any(pads) else self.pool(x, self.pool_size, self.strides)
        return self.from_channels_first(y)


class _MaxPool(_Pool):
    def pool_padded(self, x, pads):
        return self.pool(F.pad(x, pads, value=float("-inf")), self.pool_size, self.strides)


class _AvgPool(_Pool):
    def pool_padded(self, x, pads):
        # Keras averages over the real pixels only: divide by how many each window holds.
        ones = F.pad(x.new_ones((1, 1) + tuple(x.shape[2:])), pads)
        counts = self.pool(ones, self.pool_size, self.strides)
        return self.pool(F.pad(x, pads), self.pool_size, self.strides) / counts


class MaxPool1D(_MaxPool):
    spatial_dims = 1
    pool = staticmethod(F.max_pool1d)


class MaxPool2D(_MaxPool):
    spatial_dims = 2
    pool = staticmethod(F.max_pool2d)


class MaxPool3D(_MaxPool):
    spatial_dims = 3
    pool = staticmethod(F.max_pool3d)


class AvgPool1D(_AvgPool):
    spatial_dims = 1
    pool = staticmethod(F.avg_pool1d)


class AvgPool2D(_AvgPool):
    spatial_dims = 2
    pool = staticmethod(F.avg_pool2d)


class AvgPool3D(_AvgPool):
    spatial_dims = 3
    pool = staticmethod(F.avg_pool3d)


class _GlobalPool(ImageLayer):
    def __init__(self, keepdims=False, *, data_format=None, input_shape=None, name=None):
        super().__init__(data_format=data_format, input_shape=input_shape, name=name)
        self.keepdims = keepdims

    def forward(self, x):
        if x.dim() != self.spatial_dims + 2:
            raise self.shape_error(f"a {self.spatial_dims + 2}-d batch", tuple(x.shape))
        axes = tuple(range(1, 1 + self.spatial_dims)) if self.channels_last else tuple(range(2, 2 + self.spatial_dims))
        return self.reduce(x, axes, self.keepdims)


class GlobalAvgPool1D(_GlobalPool):
    spatial_dims = 1
    reduce = staticmethod(lambda x, axes, keep: x.mean(dim=axes, keepdim=keep))

    def forward(self, x, mask=None):
        """With a (batch, steps) mask, the average of the real steps only (as Keras)."""
        if mask is None:
            return super().forward(x)
        steps, real = (1, mask.unsqueeze(-1)) if self.channels_last else (2, mask.unsqueeze(1))
        total = torch.where(real, x, 0.0).sum(dim=steps, keepdim=self.keepdims)
        return total / real.to(x.dtype).sum(dim=steps, keepdim=self.keepdims)


class GlobalAvgPool2D(_GlobalPool):
    spatial_dims = 2
    reduce = staticmethod(lambda x, axes, keep: x.mean(dim=axes, keepdim=keep))


class GlobalAvgPool3D(_GlobalPool):
    spatial_dims = 3
    reduce = staticmethod(lambda x, axes, keep: x.mean(dim=axes, keepdim=keep))


class GlobalMaxPool1D(_GlobalPool):
    spatial_dims = 1
    reduce = staticmethod(lambda x, axes, keep: x.amax(dim=axes, keepdim=keep))


class GlobalMaxPool2D(_GlobalPool):
    spatial_dims = 2
    reduce = staticmethod(lambda x, axes, keep: x.amax(dim=axes, keepdim=keep))


class GlobalMaxPool3D(_GlobalPool):
    spatial_dims = 3
    reduce = staticmethod(lambda x, axes, keep: x.amax(dim=axes, keepdim=keep))


MaxPooling1D, MaxPooling2D, MaxPooling3D = MaxPool1D, MaxPool2D, MaxPool3D
AveragePooling1D, AveragePooling2D, AveragePooling3D, AvgPooling2D = AvgPool1D, AvgPool2D, AvgPool3D, AvgPool2D
GlobalAveragePooling1D, GlobalAveragePooling2D, GlobalAveragePooling3D = GlobalAvgPool1D, GlobalAvgPool2D, GlobalAvgPool3D
GlobalMaxPooling1D, GlobalMaxPooling2D, GlobalMaxPooling3D = GlobalMaxPool1D, GlobalMaxPool2D, GlobalMaxPool3D
