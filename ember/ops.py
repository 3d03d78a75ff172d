"""`ember.ops`: the user-facing name of `ember.define.ops`."""
from ember.define.ops import *  # noqa: F401,F403
from ember.define.ops import __all__  # noqa: F401
