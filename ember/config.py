"""Global defaults, named as in Keras (`keras.config.set_image_data_format`)."""

_IMAGE_DATA_FORMATS = ("channels_first", "channels_last")
_image_data_format = "channels_first"


def image_data_format() -> str:
    """The default `data_format` of image layers: "channels_first" (PyTorch's) unless changed."""
    return _image_data_format


def set_image_data_format(data_format: str) -> None:
    """Make `data_format` the default of image layers created from now on."""
    global _image_data_format
    _image_data_format = normalize_data_format(data_format)


def normalize_data_format(data_format: str | None) -> str:
    if data_format is None:
        return _image_data_format
    value = str(data_format).lower()
    if value not in _IMAGE_DATA_FORMATS:
        raise ValueError(f"data_format must be one of {_IMAGE_DATA_FORMATS}, got {data_format!r}")
    return value
