"""Output-shape inference by running a module on fake tensors (no compute, no memory)."""
import torch
from torch._subclasses.fake_tensor import FakeTensorMode


def infer_output_shape(module, input_shape, dtype=torch.float32):
    """Shape (without batch axis) of `module`'s output for inputs of `input_shape`."""
    out = fake_forward(module, (2,) + tuple(input_shape), dtype)
    return tuple(out.shape[1:])


def fake_forward(module, shape, dtype=torch.float32):
    was_training = module.training
    module.eval()  # batch statistics and dropout are irrelevant to shapes
    try:
        with FakeTensorMode(allow_non_fake_inputs=True) as mode, torch.no_grad():
            x = mode.from_tensor(torch.empty(shape, dtype=dtype)) if dtype.is_floating_point \
                else mode.from_tensor(torch.zeros(shape, dtype=dtype))
            return module(x)
    finally:
        module.train(was_training)
