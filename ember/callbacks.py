"""`ember.callbacks`: the user-facing name of `ember.train.callbacks`."""
from ember.train.callbacks import *  # noqa: F401,F403
from ember.train.callbacks import __all__  # noqa: F401
