"""`ember.regularizers`: the user-facing name of `ember.define.regularizers` (L1, L2, L1L2)."""
from ember.define.regularizers import L1, L2, L1L2, get  # noqa: F401

__all__ = ["L1", "L1L2", "L2", "get"]
