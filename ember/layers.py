"""`ember.layers`: the user-facing name of `ember.define.layers`."""
from ember.define.layers import *  # noqa: F401,F403
from ember.define.layers import __all__  # noqa: F401
