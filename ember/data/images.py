"""One image file -> a uint8 (height, width, channels) array of the requested size.

Pillow decodes (libjpeg-turbo for JPEG in its wheels; PNG, GIF's first frame, BMP). A JPEG much
larger than the target is decoded at 1/2, 1/4 or 1/8 scale straight from its DCT coefficients
(`Image.draft`, never below the size the resize needs), which is most of the speed on photos:
decoding is the pipeline's cost. Resizing uses Pillow's filters, which average over the pixels a
target pixel covers (Keras' TensorFlow resize, antialias off by default, samples them): values
differ from Keras' by resampling only; sizes, channels, crop and pad follow Keras' rules.
"""
import math
import warnings

import numpy as np
from PIL import Image

ALLOWED_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png")  # Keras' allow-list
MODES = {"grayscale": "L", "rgb": "RGB", "rgba": "RGBA"}
CHANNELS = {"grayscale": 1, "rgb": 3, "rgba": 4}
FILTERS = {"bilinear": Image.Resampling.BILINEAR, "nearest": Image.Resampling.NEAREST,
           "bicubic": Image.Resampling.BICUBIC, "area": Image.Resampling.BOX, "lanczos3": Image.Resampling.LANCZOS}
# A decompression bomb (a tiny file that claims a huge size) is refused before its pixels are allocated.
MAX_PIXELS = 178_956_970  # Pillow's default limit, set explicitly: a file is hostile until decoded


def decode_options(color_mode, image_size, interpolation, crop_to_aspect_ratio, pad_to_aspect_ratio) -> dict:
    """The checked keyword arguments of `load_image` (Keras' image options)."""
    if color_mode not in MODES:
        raise ValueError(f"color_mode must be one of {list(MODES)}; got {color_mode!r}")
    size = (image_size, image_size) if isinstance(image_size, int) else image_size
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(d, int) and d > 0 for d in size)):
        raise ValueError(f"image_size must be (height, width), two positive integers; got {image_size!r}")
    if interpolation not in FILTERS:
        raise ValueError(f"interpolation must be one of {list(FILTERS)} (Keras' lanczos5, gaussian and "
                         f"mitchellcubic have no Pillow filter); got {interpolation!r}")
    if crop_to_aspect_ratio and pad_to_aspect_ratio:
        raise ValueError("pass crop_to_aspect_ratio or pad_to_aspect_ratio, not both")
    return {"image_size": tuple(size), "color_mode": color_mode, "interpolation": interpolation,
            "crop_to_aspect_ratio": bool(crop_to_aspect_ratio), "pad_to_aspect_ratio": bool(pad_to_aspect_ratio)}


def image_shape(options) -> tuple:
    """(height, width, channels) of what `load_image(**options)` returns."""
    return (*options["image_size"], CHANNELS[options["color_mode"]])


def check_on_error(on_error):
    if on_error not in ("warn", "raise"):
        raise ValueError(f"on_error must be 'warn' or 'raise'; got {on_error!r}")


def report_decode_errors(errors, on_error, stacklevel=4):
    """[(what, reason)] of undecodable images: warnings naming each, or a ValueError with on_error="raise"."""
    for name, reason in errors:
        if on_error == "raise":
            raise ValueError(f"{name}: cannot be read as an image ({reason}); pass on_error='warn' to skip such "
                             "images")
        warnings.warn(f"skipped {name}: cannot be read as an image ({reason})", stacklevel=stacklevel)


def load_image(path, image_size, color_mode="rgb", interpolation="bilinear", crop_to_aspect_ratio=False,
               pad_to_aspect_ratio=False) -> np.ndarray:
    """The image at `path` as uint8 (height, width, channels); raises on a file that is not a readable image."""
    height, width = image_size
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    with Image.open(path) as image:
        box = _crop_box(image.size, (width, height)) if crop_to_aspect_ratio else None
        fitted = _fitted_size(image.size, (width, height)) if pad_to_aspect_ratio else (width, height)
        if image.format == "JPEG":
            before = image.size
            wanted = (math.ceil(before[0] * max(width / box[2], height / box[3])),
                      math.ceil(before[1] * max(width / box[2], height / box[3]))) if box else fitted
            image.draft(MODES[color_mode] if color_mode != "rgba" else "RGB", wanted)
            if box and image.size != before:
                fx, fy = image.size[0] / before[0], image.size[1] / before[1]
                box = (box[0] * fx, box[1] * fy, box[2] * fx, box[3] * fy)
        image = image.convert(MODES[color_mode])
        resample = FILTERS[interpolation]
        if box:
            image = image.resize((width, height), resample, box=(box[0], box[1], box[0] + box[2], box[1] + box[3]))
        elif image.size != fitted:
            image = image.resize(fitted, resample)
        if fitted != (width, height):
            padded = Image.new(image.mode, (width, height))
            padded.paste(image, ((width - fitted[0]) // 2, (height - fitted[1]) // 2))
            image = padded
        array = np.asarray(image, np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def _crop_box(size, target):
    """(left, top, width, height) of the largest centred window with the target's aspect ratio (Keras'
    smart_resize)."""
    (w, h), (tw, th) = size, target
    crop_w, crop_h = (w, min(h, max(1, round(w * th / tw)))) if w * th <= h * tw else \
        (min(w, max(1, round(h * tw / th))), h)
    return ((w - crop_w) / 2, (h - crop_h) / 2, crop_w, crop_h)


def _fitted_size(size, target):
    """The image's size scaled to fit inside the target with its aspect ratio kept (Keras' pad_to_aspect_ratio)."""
    (w, h), (tw, th) = size, target
    ratio = min(tw / w, th / h)
    return (max(1, min(tw, round(w * ratio))), max(1, min(th, round(h * ratio))))
