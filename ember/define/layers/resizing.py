"""Resizing and CenterCrop: images brought to (height, width) as Keras' torch backend does it
(`F.interpolate` at pixel centres, `align_corners=False`; "nearest" is torch's "nearest-exact")."""
import torch.nn.functional as F

from ember.define.layers.base import ImageLayer

TORCH_MODES = {"bilinear": "bilinear", "nearest": "nearest-exact"}


def aspect_crop(height, width, target_height, target_width):
    """(top, left, crop height, crop width): the centred box of the target's aspect ratio, Keras' arithmetic."""
    crop_height = max(min(height, int(float(width * target_height) / target_width)), 1)
    crop_width = max(min(width, int(float(height * target_width) / target_height)), 1)
    return int(float(height - crop_height) / 2), int(float(width - crop_width) / 2), crop_height, crop_width


def crop(x, top, left, height, width):
    return x[:, :, top:top + height, left:left + width]


def resize(x, height, width, interpolation, antialias=False, crop_to_aspect_ratio=False):
    """NCHW `x` resized to (height, width); with `crop_to_aspect_ratio`, its centred box of that aspect
    ratio is cut out first (Keras' smart_resize)."""
    if crop_to_aspect_ratio:
        x = crop(x, *aspect_crop(x.shape[2], x.shape[3], height, width))
    mode = TORCH_MODES[interpolation]
    return F.interpolate(x, size=(height, width), mode=mode, align_corners=False if mode == "bilinear" else None,
                         antialias=antialias and mode == "bilinear")


class _ToSize(ImageLayer):
    def __init__(self, height, width, *, data_format=None, input_shape=None, name=None):
        super().__init__(data_format=data_format, input_shape=input_shape, name=name)
        self.height, self.width = int(height), int(width)

    def resize(self, x, interpolation, antialias=False, crop_to_aspect_ratio=False):
        return resize(x, self.height, self.width, interpolation, antialias, crop_to_aspect_ratio)


class Resizing(_ToSize):
    """Every image resized to (height, width) by "bilinear" or "nearest" interpolation; with
    `crop_to_aspect_ratio` the centred box of the target's aspect ratio is cut out first."""

    def __init__(self, height, width, interpolation="bilinear", crop_to_aspect_ratio=False, antialias=False, *,
                 data_format=None, input_shape=None, name=None):
        super().__init__(height, width, data_format=data_format, input_shape=input_shape, name=name)
        if interpolation not in TORCH_MODES:
            raise ValueError(f"interpolation must be one of {tuple(TORCH_MODES)}, got {interpolation!r}")
        self.interpolation, self.crop_to_aspect_ratio, self.antialias = interpolation, crop_to_aspect_ratio, antialias

    def forward(self, x):
        if x.dim() != 4:
            raise self.shape_error("a 4-d batch of images", tuple(x.shape))
        y = self.resize(self.to_channels_first(x), self.interpolation, self.antialias, self.crop_to_aspect_ratio)
        return self.from_channels_first(y)


class CenterCrop(_ToSize):
    """The centred (height, width) box of each image; an image smaller than that on either side is
    instead cropped to the target's aspect ratio and resized (bilinear), as Keras does."""

    def forward(self, x):
        if x.dim() != 4:
            raise self.shape_error("a 4-d batch of images", tuple(x.shape))
        x = self.to_channels_first(x)
        height, width = x.shape[2], x.shape[3]
        if height >= self.height and width >= self.width:
            y = crop(x, (height - self.height) // 2, (width - self.width) // 2, self.height, self.width)
        else:
            y = self.resize(x, "bilinear", crop_to_aspect_ratio=True)
        return self.from_channels_first(y)
