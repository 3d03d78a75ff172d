"""Masks, Keras' way: which steps of a (batch, steps, ...) tensor are real (True) and which padding.

A layer that makes or changes a mask has `compute_mask(inputs, mask)` (the mask of its output:
`Embedding(mask_zero=True)` gives `ids != 0`, an LSTM keeps it only with return_sequences); a
layer that uses one takes `mask=` in `forward`. Layers that keep the steps as they are
(`supports_masking = True`: Dense, Dropout, activations, normalizations) pass the mask on; any
other module, plain torch ones included, ends it.

How a mask travels:
- functional models: a symbolic tensor carries its mask (`tensor.mask`, itself a symbolic tensor
  made by recorded `ember.ops` calls); a call on it records `mask=<that tensor>` as an argument of
  the layer that takes one, so the saved graph holds masks as plain data (as Keras 3's config does);
- Sequential: `forward` hands each layer the mask the previous one left (`call_with_mask`).
An explicit `layer(x, mask=m)` always wins over the mask `x` carries.
"""
import functools
import inspect


@functools.cache
def _forward_takes_mask(cls) -> bool:
    return "mask" in inspect.signature(cls.forward).parameters


def takes_mask(module) -> bool:
    """Whether `module.forward` has a `mask` parameter."""
    return _forward_takes_mask(type(module))


def output_mask(module, inputs, mask):
    """The mask of `module`'s output, given its inputs and their mask: `compute_mask`'s answer, or None
    for a module without one (it ends the mask)."""
    compute = getattr(module, "compute_mask", None)
    return compute(inputs, mask) if callable(compute) else None


def call_with_mask(module, x, mask):
    """(module's output, its mask) for an input `x` with `mask` (None: no mask)."""
    y = module(x, mask=mask) if mask is not None and takes_mask(module) else module(x)
    return y, output_mask(module, x, mask)
