"""Training or inference mode for one call, as Keras' `layer(x, training=False)`.

Keras lets a call fix its mode: `base_model(x, training=False)` keeps a pretrained block in
inference mode (BatchNormalization on its moving statistics, Dropout off) while the rest of the
model trains. In ember the call's `training=` is recorded with the call (functional models save
it) and applied around it; a module already in that mode is left untouched, so an exported or
evaluated model runs with no mode switches at all.
"""
import contextlib


def call_in_mode(module, training, *args, **kwargs):
    """`module(*args, **kwargs)` in the mode `training` asks for (None: as the module is)."""
    if training is None:
        return module(*args, **kwargs)
    with in_mode(module, training):
        return module(*args, **kwargs)


@contextlib.contextmanager
def in_mode(module, training):
    """`module` and every module inside it in training (True) or inference (False) mode for the block;
    None leaves them as they are."""
    if training is None or all(m.training == bool(training) for m in module.modules()):
        yield
        return
    modes = [(m, m.training) for m in module.modules()]
    module.train(bool(training))
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode
