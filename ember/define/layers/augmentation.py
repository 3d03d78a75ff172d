"""Random image augmentation as Keras' preprocessing layers compute it: RandomFlip, RandomRotation,
RandomZoom, RandomTranslation, RandomCrop, RandomContrast, RandomBrightness.

They are random in training mode only. In eval mode each returns its input (integers as floats, as
Keras' layers output floats), except RandomCrop, which resizes the centred box of the target's aspect
ratio to (height, width): what Keras documents, and what its output shape says. (Keras 3's code returns
the uncropped input at inference, keras-team/keras#21868.) An exported model runs in eval mode, so it
holds only this inference behaviour.

A batch is augmented by one set of tensor ops: one draw per image (per batch for RandomCrop, as in
Keras); the geometric layers resample every image at once through `grid_sample`, given a batch of
affine matrices in Keras' convention (`keras.ops.image.affine_transform`).

Randomness. With `seed=None` (the default) the draws come from torch's default generator on the
input's device, so `ember.seed(n)` repeats a run, and the RNG state a training backup saves resumes it
exactly. With `seed=n` the layer has a stream of its own, as Keras gives it a SeedGenerator: its k-th
training call draws from a generator seeded from (n, k). k is the buffer `draws`, part of the
state_dict, so it is saved with the weights and restored from a backup, and a resumed run continues
the stream where it stopped.

Keras 3 behaviour kept although it surprises: RandomFlip("horizontal_and_vertical") flips an image
along both axes or neither (one draw; stack a "horizontal" and a "vertical" RandomFlip for independent
flips), and RandomContrast with one number `f` draws its factor in [1, 1 + f], not [1 - f, 1 + f].
Keras 3 behaviour changed: RandomCrop takes a random box whenever the image is at least the target
size (Keras 3 wants it strictly larger on both sides, else crops the centre), and an image smaller
than the target is resized as at inference (Keras 3 stretches the box of the target size that starts
where the centred aspect-ratio box does, cut short by the image's edge).
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

from ember.define.layers.base import ImageLayer
from ember.define.layers.resizing import resize

FLIP_MODES = ("horizontal", "vertical", "horizontal_and_vertical")
FILL_MODES = ("reflect", "wrap", "constant", "nearest")
INTERPOLATIONS = ("bilinear", "nearest")
# grid_sample's padding for each of Keras' fill modes ("wrap" samples a circularly padded copy).
PADDING_MODES = {"reflect": "reflection", "constant": "zeros", "nearest": "border", "wrap": "border"}


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def factor_range(layer, argument, factor, low, high, low_included=True) -> tuple:
    """Keras' (lower, upper) for `factor`: a pair gives its sorted values, a number f gives
    (max(-|f|, low), |f|). Every number must lie in [low, high] ((low, high] without `low_included`)."""
    pair = isinstance(factor, (list, tuple))
    numbers = list(factor) if pair else [factor]
    if (pair and len(numbers) != 2) or not all(
            _is_number(v) and (low <= v if low_included else low < v) and v <= high for v in numbers):
        bounds = f"{'[' if low_included else '('}{low}, {high}]"
        raise ValueError(f"{layer} {argument} must be a number or a pair of numbers in {bounds}, got {factor!r}")
    if pair:
        return tuple(sorted(float(v) for v in numbers))
    return max(-abs(float(factor)), low), abs(float(factor))


def value_range_bounds(layer, value_range) -> tuple:
    if not (isinstance(value_range, (list, tuple)) and len(value_range) == 2 and all(map(_is_number, value_range))):
        raise ValueError(f"{layer} value_range must be a pair of numbers (low, high), got {value_range!r}")
    return tuple(sorted(float(v) for v in value_range))


def check_choice(layer, argument, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{layer} {argument} must be one of {choices}, got {value!r}")


def affine_sample(images, matrices, interpolation, fill_mode, fill_value=0.0):
    """NCHW `images` resampled: output pixel (x, y) (column, row) takes the input at `matrices[n] @ (x, y, 1)`,
    `matrices` being (N, 2, 3), as keras.ops.image.affine_transform maps pixels; points outside the
    image are filled by Keras' `fill_mode`."""
    height, width = images.shape[2:]
    dtype = torch.float64 if images.dtype == torch.float64 else torch.float32
    rows, cols = (torch.arange(size, dtype=dtype, device=images.device) for size in (height, width))
    ones = torch.ones(height, width, dtype=dtype, device=images.device)
    pixels = torch.stack([*torch.meshgrid(cols, rows, indexing="xy"), ones], -1)  # (H, W, (x, y, 1))
    x, y = torch.einsum("nij,hwj->inhw", matrices.to(dtype), pixels)  # (N, H, W) source columns and rows
    if fill_mode == "wrap":
        # Coordinates modulo the size, in a copy with the first row and column repeated after the
        # last, so that bilinear weights across the seam reach the opposite edge.
        x, y = torch.remainder(x, width), torch.remainder(y, height)
        images, width, height = F.pad(images, (0, 1, 0, 1), mode="circular"), width + 1, height + 1
    # Pixel centres in grid_sample's [-1, 1] (sizes as Python numbers: no copy to the device).
    grid = torch.stack([(2 * x + 1) / width - 1, (2 * y + 1) / height - 1], -1).to(images.dtype)
    sampled = F.grid_sample(images, grid, mode=interpolation, padding_mode=PADDING_MODES[fill_mode],
                            align_corners=False)
    if fill_mode == "constant" and fill_value != 0:
        # grid_sample weighs the neighbours outside the image by 0, Keras by fill_value.
        inside = F.grid_sample(torch.ones_like(images[:, :1]), grid, mode=interpolation, padding_mode="zeros",
                               align_corners=False)
        sampled = sampled + (1 - inside) * fill_value
    return sampled


def _matrices(*coefficients):
    """(N, 2, 3) affine matrices from Keras' six coefficients: (N,) tensors, or numbers shared by all."""
    like = next(v for v in coefficients if isinstance(v, torch.Tensor))
    return torch.stack([v if isinstance(v, torch.Tensor) else torch.full_like(like, v) for v in coefficients],
                       -1).view(-1, 2, 3)


class RandomImageLayer(ImageLayer):
    """An augmentation layer: `augment(x, generator)` in training, `infer(x)` in eval mode (the identity
    unless overridden). Takes 4-d batches, or one 3-d image as a batch of one."""

    def __init__(self, *, seed=None, data_format=None, input_shape=None, name=None):
        super().__init__(data_format=data_format, input_shape=input_shape, name=name)
        if seed is not None and not (isinstance(seed, int) and not isinstance(seed, bool)):
            raise ValueError(f"{type(self).__name__} seed must be an integer or None, got {seed!r}")
        self.seed = seed
        if seed is not None:
            self.register_buffer("draws", torch.zeros((), dtype=torch.int64))
            self.draws_made = 0  # the buffer's value, kept here so that reading it never waits for the device

    @property
    def spatial_axes(self) -> tuple:
        return (1, 2) if self.channels_last else (2, 3)

    def __call__(self, x, *args, **kwargs):
        if isinstance(x, torch.Tensor) and x.dim() == 3:
            return super().__call__(x[None], *args, **kwargs)[0]
        return super().__call__(x, *args, **kwargs)

    def forward(self, x):
        if x.dim() != 4:
            raise self.shape_error("a 4-d batch of images (or one 3-d image)", tuple(x.shape))
        if not x.is_floating_point():
            x = x.to(torch.get_default_dtype())
        return self.augment(x, self.generator(x.device)) if self.training else self.infer(x)

    def infer(self, x):
        return x

    def augment(self, x, generator):
        raise NotImplementedError

    def generator(self, device):
        """None (torch's default generator) without a seed; with one, this call's own generator."""
        if self.seed is None:
            return None
        seed = np.random.SeedSequence([self.seed % 2**64, self.draws_made]).generate_state(1, np.uint64)[0]
        self.draws_made += 1
        self.draws.fill_(self.draws_made)
        return torch.Generator(device).manual_seed(int(seed))

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        if self.seed is not None:
            self.draws_made = int(self.draws)

    @staticmethod
    def uniform(low, high, count, generator, device):
        return torch.rand(count, generator=generator, device=device) * (high - low) + low

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


class RandomFlip(RandomImageLayer):
    """Flips half of the images (each with probability 1/2): left-right with mode "horizontal",
    top-bottom with "vertical", both with "horizontal_and_vertical" (one draw for both, as Keras 3)."""

    def __init__(self, mode="horizontal_and_vertical", seed=None, *, data_format=None, input_shape=None, name=None):
        super().__init__(seed=seed, data_format=data_format, input_shape=input_shape, name=name)
        check_choice("RandomFlip", "mode", mode, FLIP_MODES)
        self.mode = mode

    def augment(self, x, generator):
        return self.flip(x, torch.rand(x.shape[0], generator=generator, device=x.device) <= 0.5)

    def flip(self, images, flips):
        """`images` with the ones where the booleans `flips` are True flipped by the layer's mode."""
        height_axis, width_axis = self.spatial_axes
        axes = {"horizontal": (width_axis,), "vertical": (height_axis,)}.get(self.mode, (height_axis, width_axis))
        return torch.where(flips.view(-1, 1, 1, 1), images.flip(axes), images)


class RandomCrop(RandomImageLayer):
    """In training, the same random (height, width) box of every image of a batch; in eval mode (and for
    images smaller than the box) the centred box of that aspect ratio resized to (height, width), bilinear."""

    def __init__(self, height, width, seed=None, *, data_format=None, input_shape=None, name=None):
        super().__init__(seed=seed, data_format=data_format, input_shape=input_shape, name=name)
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (height, width)):
            raise ValueError(f"RandomCrop height and width must be positive integers, got {height!r}, {width!r}")
        self.height, self.width = height, width

    def compute_output_shape(self, input_shape):
        if self.channels_last:
            return (self.height, self.width, input_shape[-1])
        return (input_shape[0], self.height, self.width)

    def augment(self, x, generator):
        height, width = (x.shape[axis] for axis in self.spatial_axes)
        if height < self.height or width < self.width:
            return self.infer(x)
        top, left = (torch.randint(room + 1, (), generator=generator, device=x.device)
                     for room in (height - self.height, width - self.width))
        return self.crop(x, top, left)

    def crop(self, images, top, left):
        """The (height, width) box of every image whose top-left pixel is (`top`, `left`): integers or
        0-d tensors (indexed on the device, never read back)."""
        height_axis, width_axis = self.spatial_axes
        rows = top + torch.arange(self.height, device=images.device)
        cols = left + torch.arange(self.width, device=images.device)
        return images.index_select(height_axis, rows).index_select(width_axis, cols)

    def infer(self, x):
        resized = resize(self.to_channels_first(x), self.height, self.width, "bilinear", crop_to_aspect_ratio=True)
        return self.from_channels_first(resized)


class _AffineLayer(RandomImageLayer):
    """Resamples each image through its own affine matrix, filling what comes from outside the image by
    `fill_mode`: "reflect" (d c b a | a b c d | d c b a), "wrap" (a b c d | a b c d | a b c d),
    "constant" (k k k k | a b c d | k k k k, k = fill_value) or "nearest" (a a a a | a b c d | d d d d)."""

    def __init__(self, fill_mode, interpolation, seed, fill_value, *, data_format, input_shape, name):
        super().__init__(seed=seed, data_format=data_format, input_shape=input_shape, name=name)
        check_choice(type(self).__name__, "fill_mode", fill_mode, FILL_MODES)
        check_choice(type(self).__name__, "interpolation", interpolation, INTERPOLATIONS)
        self.fill_mode, self.interpolation, self.fill_value = fill_mode, interpolation, float(fill_value)

    def image_size(self, images) -> tuple:
        return tuple(images.shape[axis] for axis in self.spatial_axes)

    def transform(self, images, matrices):
        """`images` (in the layer's data format) resampled through (N, 2, 3) matrices (see affine_sample)."""
        sampled = affine_sample(self.to_channels_first(images), matrices, self.interpolation, self.fill_mode,
                                self.fill_value)
        return self.from_channels_first(sampled)


class RandomRotation(_AffineLayer):
    """Turns each image about its centre by a random angle of `factor` turns: a number f draws in
    [-f, f], a pair (lower, upper) in [lower, upper], within [-1, 1]. Positive is counter-clockwise."""

    def __init__(self, factor, fill_mode="reflect", interpolation="bilinear", seed=None, fill_value=0.0, *,
                 data_format=None, input_shape=None, name=None):
        super().__init__(fill_mode, interpolation, seed, fill_value, data_format=data_format,
                         input_shape=input_shape, name=name)
        self.lower, self.upper = factor_range("RandomRotation", "factor", factor, -1, 1)

    def augment(self, x, generator):
        return self.rotate(x, self.uniform(self.lower * 360, self.upper * 360, x.shape[0], generator, x.device))

    def rotate(self, images, degrees):
        """Each image turned counter-clockwise by its angle in `degrees` (N,) about its centre."""
        height, width = self.image_size(images)
        radians = degrees * (math.pi / 180)
        cos, sin = radians.cos(), radians.sin()
        x, y = (width - 1) / 2, (height - 1) / 2
        return self.transform(images, _matrices(cos, -sin, x - x * cos + y * sin, sin, cos, y - x * sin - y * cos))


class RandomZoom(_AffineLayer):
    """Scales each image about its centre by 1 + a random fraction of `height_factor` vertically and of
    `width_factor` horizontally (None: the vertical zoom, keeping the aspect ratio). A number f draws
    in [-f, f], a pair in its range, within (-1, 1]; positive zooms out, negative in."""

    def __init__(self, height_factor, width_factor=None, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, *, data_format=None, input_shape=None, name=None):
        super().__init__(fill_mode, interpolation, seed, fill_value, data_format=data_format,
                         input_shape=input_shape, name=name)
        self.height_range = factor_range("RandomZoom", "height_factor", height_factor, -1, 1, low_included=False)
        self.width_range = None if width_factor is None else \
            factor_range("RandomZoom", "width_factor", width_factor, -1, 1, low_included=False)

    def augment(self, x, generator):
        def zooms(lower, upper):
            return self.uniform(1 + lower, 1 + upper, x.shape[0], generator, x.device)

        height_zooms = zooms(*self.height_range)
        return self.zoom(x, height_zooms, height_zooms if self.width_range is None else zooms(*self.width_range))

    def zoom(self, images, height_zooms, width_zooms):
        """Each image scaled about its centre; a zoom above 1 shows more of the image (zooms out)."""
        height, width = self.image_size(images)
        return self.transform(images, _matrices(width_zooms, 0, (width - 1) / 2 * (1 - width_zooms),
                                                0, height_zooms, (height - 1) / 2 * (1 - height_zooms)))


class RandomTranslation(_AffineLayer):
    """Shifts each image by a random fraction of its height (`height_factor`) and width (`width_factor`):
    a number f draws in [-f, f], a pair in its range, within [-1, 1]; positive moves down and right."""

    def __init__(self, height_factor, width_factor, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, *, data_format=None, input_shape=None, name=None):
        super().__init__(fill_mode, interpolation, seed, fill_value, data_format=data_format,
                         input_shape=input_shape, name=name)
        self.height_range = factor_range("RandomTranslation", "height_factor", height_factor, -1, 1)
        self.width_range = factor_range("RandomTranslation", "width_factor", width_factor, -1, 1)

    def augment(self, x, generator):
        height, width = self.image_size(x)
        down = self.uniform(*self.height_range, x.shape[0], generator, x.device) * height
        right = self.uniform(*self.width_range, x.shape[0], generator, x.device) * width
        return self.translate(x, down, right)

    def translate(self, images, down, right):
        """Each image moved `down` rows and `right` columns (N,), in pixels; negative moves up or left."""
        return self.transform(images, _matrices(1, 0, -right, 0, 1, -down))


class RandomContrast(RandomImageLayer):
    """Scales each channel of each image about its mean by a random factor in [1 - lower, 1 + upper],
    clipped to `value_range`. `factor` is (lower, upper) within [0, 1]; one number f means (0, f), as in
    Keras 3 (whose documentation says (f, f))."""

    def __init__(self, factor, value_range=(0, 255), seed=None, *, data_format=None, input_shape=None, name=None):
        super().__init__(seed=seed, data_format=data_format, input_shape=input_shape, name=name)
        self.lower, self.upper = factor_range("RandomContrast", "factor", factor, 0, 1)
        self.value_range = value_range_bounds("RandomContrast", value_range)

    def augment(self, x, generator):
        return self.adjust(x, self.uniform(1 - self.lower, 1 + self.upper, x.shape[0], generator, x.device))

    def adjust(self, images, factors):
        """`(images - mean) * factor + mean`, one factor (N,) per image, the mean per image and channel."""
        mean = images.mean(self.spatial_axes, keepdim=True)
        return ((images - mean) * factors.to(images.dtype).view(-1, 1, 1, 1) + mean).clamp(*self.value_range)


class RandomBrightness(RandomImageLayer):
    """Adds to each image a random fraction of the width of `value_range`, then clips to it. `factor`:
    a number f draws the fraction in [-f, f], a pair in its range, within [-1, 1]."""

    def __init__(self, factor, value_range=(0, 255), seed=None, *, data_format=None, input_shape=None, name=None):
        super().__init__(seed=seed, data_format=data_format, input_shape=input_shape, name=name)
        self.lower, self.upper = factor_range("RandomBrightness", "factor", factor, -1, 1)
        self.value_range = value_range_bounds("RandomBrightness", value_range)

    def augment(self, x, generator):
        low, high = self.value_range
        return self.adjust(x, self.uniform(self.lower, self.upper, x.shape[0], generator, x.device) * (high - low))

    def adjust(self, images, deltas):
        """`images + delta`, one delta (N,) per image, clipped to `value_range`."""
        return (images + deltas.to(images.dtype).view(-1, 1, 1, 1)).clamp(*self.value_range)
