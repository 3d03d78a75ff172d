"""EinsumDense: Keras' dense layer written as an einsum, `activation(einsum(equation, x, kernel) + bias)`,
for projections onto several axes at once (attention heads: "abc,cde->abde").

The equation is "<input>,<kernel>-><output>" in letters, with `...` standing for axes it leaves alone
at the start of the input and output ("...b,bc->...c") or at their end ("ab...,bc->ac..."). The
kernel's shape comes from the input's sizes and `output_shape` (the output without its batch axis,
None where the input fixes the size); the bias spans the output from the first of `bias_axes` on.
The kernel keeps Keras' layout: a Keras file's array is the parameter as it is.
"""
import math
import re

import torch
from torch import nn

from ember.define import activations
from ember.define.layers.base import Layer

_FORMS = (("plain", r"([a-zA-Z]+),([a-zA-Z]+)->([a-zA-Z]+)"), ("left", r"\.\.\.([a-zA-Z]+),([a-zA-Z]+)->\.\.\.([a-zA-Z]+)"),
          ("right", r"([a-zA-Z]{2,})\.\.\.,([a-zA-Z]+)->([a-zA-Z]+)\.\.\."))


def parse_equation(equation):
    """(input spec, kernel spec, output spec, where `...` is: "plain", "left" or "right")."""
    for form, pattern in _FORMS:
        match = re.fullmatch(pattern, equation) if isinstance(equation, str) else None
        if match:
            return (*match.groups(), form)
    raise ValueError(f"EinsumDense's equation must be '[X],[Y]->[Z]', '...[X],[Y]->...[Z]' or "
                     f"'[X]...,[Y]->[Z]...' in letters, got {equation!r}")


def einsum_shapes(equation, bias_axes, input_shape, output_shape):
    """(kernel shape, bias shape or None, output shape) for `input_shape` (with its batch axis) and the
    partial `output_shape` (without it), as Keras' EinsumDense builds them."""
    input_spec, kernel_spec, output_spec, form = parse_equation(equation)
    elided = len(input_shape) - len(input_spec)
    if elided < 0 or (form != "plain" and elided == 0) or (form == "plain" and elided):
        raise ValueError(f"equation {equation!r} does not fit an input of {len(input_shape)} axes")
    output = [input_shape[0]] + ([output_shape] if isinstance(output_shape, int) else list(output_shape))
    if form == "left":  # the elided axes after the batch axis come first
        output[1:1] = input_shape[1:elided]
        input_axis = {letter: i + elided for i, letter in enumerate(input_spec)}
        output_axis = {letter: i + elided for i, letter in enumerate(output_spec)}
    else:
        output += list(input_shape[len(input_shape) - elided:])
        input_axis = {letter: i for i, letter in enumerate(input_spec)}
        output_axis = {letter: i for i, letter in enumerate(output_spec)}
    if len(output) != len(output_spec) + elided:
        raise ValueError(f"output_shape {output_shape!r} does not fit equation {equation!r}")
    for letter, axis in output_axis.items():
        if letter in input_axis:
            size = input_shape[input_axis[letter]]
            if output[axis] is not None and output[axis] != size:
                raise ValueError(f"output_shape gives axis {letter!r} size {output[axis]}, the input {size}")
            output[axis] = size
        elif letter not in kernel_spec:
            raise ValueError(f"output axis {letter!r} of {equation!r} is in neither the input nor the kernel")
    kernel = []
    for letter in kernel_spec:
        size = output[output_axis[letter]] if letter in output_axis else \
            input_shape[input_axis[letter]] if letter in input_axis else None
        if not isinstance(size, int):
            raise ValueError(f"kernel axis {letter!r} of {equation!r} has no size from the input or output_shape")
        kernel.append(size)
    if not bias_axes:
        return tuple(kernel), None, tuple(output)
    if not isinstance(bias_axes, str) or any(letter not in output_spec for letter in bias_axes):
        raise ValueError(f"bias_axes must be letters of the output {output_spec!r}, got {bias_axes!r}")
    first = min(output_spec.index(letter) for letter in bias_axes)
    bias = [output[output_axis[letter]] if letter in bias_axes else 1 for letter in output_spec[first:]]
    return tuple(kernel), tuple(bias + [1] * (elided if form != "left" else 0)), tuple(output)


class EinsumDense(Layer):
    def __init__(self, equation, output_shape, activation=None, bias_axes=None, *, input_shape=None, name=None):
        super().__init__(input_shape=input_shape, name=name)
        self.specs = parse_equation(equation)  # (input, kernel, output, form): parsed once, read by every call
        self.equation, self.partial_output_shape, self.bias_axes = equation, output_shape, bias_axes
        self.activation = activations.get(activation)

    def build(self, input_shape):
        kernel, bias, output = einsum_shapes(self.equation, self.bias_axes, (None,) + tuple(input_shape),
                                             self.partial_output_shape)
        input_spec, kernel_spec, _, _ = self.specs
        # Glorot uniform over the kernel's input axes (summed over) and output axes, as Keras initializes it.
        fan_in = math.prod(size for letter, size in zip(kernel_spec, kernel) if letter in input_spec)
        fan_out = math.prod(kernel) // fan_in
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        self.kernel = nn.Parameter(torch.empty(kernel).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(bias)) if bias else None

    def compute_output_shape(self, input_shape):
        return einsum_shapes(self.equation, self.bias_axes, (None,) + tuple(input_shape), self.partial_output_shape)[2][1:]

    def forward(self, x):
        input_spec, kernel_spec, _, form = self.specs
        first = x.dim() - len(input_spec) if form == "left" else 0  # where the equation's input letters start
        sizes = {letter: x.shape[first + i] for i, letter in enumerate(input_spec) if first + i < x.dim()}
        kernel_sizes = dict(zip(kernel_spec, self.kernel.shape))
        if x.dim() != len(self.input_shape) + 1 or any(
                sizes[letter] != size for letter, size in kernel_sizes.items() if letter in sizes):
            # the equation's input, each axis the kernel sums over with its size, "..." for the elided axes
            axes = tuple(kernel_sizes.get(letter, letter) for letter in input_spec)
            elided = ("...",) * (len(self.input_shape) + 1 - len(input_spec))
            expected = elided + axes if form == "left" else axes + elided
            raise self.shape_error(expected, tuple(x.shape))
        y = torch.einsum(self.equation, x, self.kernel)
        return self.activation(y + self.bias if self.bias is not None else y)
