"""What every strict reader of untrusted input (files from someone else, clients' requests) shares.

`isinstance(True, int)` is true, so JSON `true` passes for the integer 1; and an error message that quotes
what came must not quote megabytes of it.
"""
MAX_RANK = 32  # numpy allows 64 dimensions; no served model takes more than a handful


def is_int(value) -> bool:
    """A JSON integer: an int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def short_repr(value) -> str:
    """repr(value), cut at 200 characters: error messages quote what came, never megabytes of it."""
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."
