"""Errors that say what was expected and what came."""


class ShapeError(ValueError):
    """Data does not fit a layer: names the layer, the expected and the received shape."""

    def __init__(self, layer_name, layer_type, expected, received, detail=""):
        self.layer_name, self.layer_type = layer_name, layer_type
        self.expected, self.received = expected, received
        message = (
            f"layer '{layer_name}' ({layer_type}) expected input of shape {_fmt(expected)}, "
            f"received {_fmt(received)}"
        )
        if detail:
            message += f": {detail}"
        super().__init__(message)


def _fmt(shape):
    if isinstance(shape, (tuple, list)):
        return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"
    return str(shape)
