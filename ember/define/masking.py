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
An explicit `layer(x, mask=m)` always wins over the mask `x` carries. A layer taking several
tensors (attention's query, value, key) takes their masks as `<argument>_mask`, as in Keras.
"""
import functools
import inspect


@functools.cache
def _forward_parameters(cls) -> tuple:
    return tuple(inspect.signature(cls.forward).parameters)[1:]  # after self


def takes_argument(module, name) -> bool:
    """Whether `module.forward` has a parameter `name`."""
    return name in _forward_parameters(type(module))


def takes_mask(module) -> bool:
    """Whether `module.forward` has a `mask` parameter."""
    return takes_argument(module, "mask")


def with_argument_masks(module, args, kwargs) -> dict:
    """`kwargs` with `<argument>_mask` set to the mask its tensor carries, for each argument of `module`'s
    forward that has such a parameter and was not given one."""
    names = _forward_parameters(type(module))
    for position, name in enumerate(names):
        if f"{name}_mask" not in names:
            continue
        tensor = args[position] if position < len(args) else kwargs.get(name)
        carried = getattr(tensor, "mask", None)
        if carried is not None and kwargs.get(f"{name}_mask") is None:
            kwargs = {**kwargs, f"{name}_mask": carried}
    return kwargs


def output_mask(module, inputs, mask):
    """The mask of `module`'s output, given its inputs and their mask: `compute_mask`'s answer, or None
    for a module without one (it ends the mask)."""
    compute = getattr(module, "compute_mask", None)
    return compute(inputs, mask) if callable(compute) else None


def call_with_mask(module, x, mask):
    """(module's output, its mask) for an input `x` with `mask` (None: no mask)."""
    y = module(x, mask=mask) if mask is not None and takes_mask(module) else module(x)
    return y, output_mask(module, x, mask)
