"""Output-shape inference by running a module on fake tensors (no compute, no memory)."""
import torch
from torch._subclasses.fake_tensor import FakeTensorMode


def infer_output_shape(module, input_shape, dtype=torch.float32):
    """Shape (without batch axis) of `module`'s output for inputs of `input_shape`, or for a list
    of inputs of the shapes `input_shape` lists (a module taking several tensors)."""
    batched = [(2,) + tuple(shape) for shape in input_shape] if isinstance(input_shape, list) \
        else (2,) + tuple(input_shape)
    out = fake_forward(module, batched, dtype)
    return tuple(out.shape[1:])


def fake_forward(module, shape, dtype=torch.float32):
    """`module`'s output on a fake tensor of `shape`, or on a list of them for a list of shapes."""
    was_training = module.training
    module.eval()  # batch statistics and dropout are irrelevant to shapes
    try:
        with FakeTensorMode(allow_non_fake_inputs=True) as mode, torch.no_grad():
            def fake(one_shape):
                return mode.from_tensor(torch.empty(one_shape, dtype=dtype)) if dtype.is_floating_point \
                    else mode.from_tensor(torch.zeros(one_shape, dtype=dtype))
            return module([fake(one) for one in shape] if isinstance(shape, list) else fake(shape))
    finally:
        module.train(was_training)
