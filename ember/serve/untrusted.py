"""Numbers and shapes read from untrusted input (headers, URL segments, JSON, folder names), strictly.

Python's own readers are lenient in ways a client can exploit: `str.isdigit()` is true for "²" and "١",
which `int()` then refuses (a 500) or reads as another number; JSON `true` passes for the dimension 1
unless read with `ember.untrusted.is_int`; and a shape such as [0, 2**62, 2**62] holds no elements yet
makes numpy raise when asked to allocate it. Everything here answers a client's mistake with a BadRequest
naming what was expected and what came.
"""
from ember.serve.errors import BadRequest
from ember.untrusted import MAX_RANK, is_int, short_repr


def decimal_int(text: str) -> int | None:
    """`text` as a non-negative integer when it is ASCII digits only (no sign, spaces, "_" or "²"), else None."""
    if text.isascii() and text.isdigit():
        return int(text)
    return None


def tensor_shape(value, what: str, max_elements: int) -> tuple:
    """A declared tensor shape: a list of at most MAX_RANK non-negative integers whose product, counting
    zeros as ones, is at most `max_elements` (the most elements the request's body could hold)."""
    if not isinstance(value, list) or not all(is_int(d) and d >= 0 for d in value):
        raise BadRequest(f"{what}: expected \"shape\" as a list of non-negative integers, got {short_repr(value)}")
    if len(value) > MAX_RANK:
        raise BadRequest(f"{what}: expected a shape of at most {MAX_RANK} dimensions, got {len(value)}")
    # Zeros count as ones: numpy refuses to allocate even an empty array whose other dimensions overflow.
    room = max_elements
    for dimension in value:
        room //= max(dimension, 1)
        if room == 0:
            raise BadRequest(f"{what}: shape {short_repr(value)} holds more elements than a body of "
                             f"{max_elements} bytes can carry")
    return tuple(value)
