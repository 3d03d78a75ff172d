"""Two CPU training kernels PyTorch's eager mode runs slowly, replaced around the forward pass by a
TorchFunctionMode, so the model's code stays as written. Both were found profiling the seed ConvNet's
step on an AMD EPYC (AVX2), where together they took ~5 ms of a ~31 ms step.

- Dropout masks (`fast_dropout`): torch's CPU bernoulli_ draws one Mersenne Twister number per
  element, mostly on one thread (~13-15 ns/element: 2.7-3 ms for the ConvNet's 200k activations,
  measured on an AMD EPYC and on an Intel Xeon with AMX, whose MKL torch 2.13 does not use for it).
  Here the mask comes from 16-bit uniforms, four per 64-bit draw of the same generator (so
  torch.manual_seed / ember.seed still decide it): 3-4x faster. The keep probability is rounded to
  a multiple of 1/65536 and kept values are scaled by its exact inverse, so the expected output
  still equals the input.
- Gradients at a channels_last flatten: flattening an NHWC activation for a classifier head copies it
  to NCHW order, so its gradient comes back NCHW and every backward kernel above it mixes layouts
  (max-pool's backward then copies its NHWC tensors to NCHW and back: 2.5 ms instead of 0.3 ms;
  ReLU's runs ~20x slower). Here that gradient is handed back in NHWC.

And one spelling: `x.view(x.size(0), -1)` (the seed's flatten) fails on an NHWC activation, which
no view can merge. Here it views an NCHW copy instead (the values, and with the NHWC gradient above,
the gradients of the NCHW model), so such a model trains in channels_last too.
"""
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

_FLATTENS = {torch.flatten, torch.Tensor.flatten, torch.reshape, torch.Tensor.reshape, torch.Tensor.view}


class CpuTrainingFastPaths(TorchFunctionMode):
    def __init__(self, dropout: bool, channels_last: bool):
        super().__init__()
        self.dropout, self.channels_last = dropout, channels_last

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.dropout and func is F.dropout:
            return dropout(*args, **kwargs)
        if self.channels_last and func in _FLATTENS and _flattens_nhwc_activation(func, args, kwargs):
            x = args[0]
            args = (_NchwCopyWithNhwcGradient.apply(x) if x.requires_grad else x.contiguous(), *args[1:])
        return func(*args, **kwargs)


def dropout(input, p=0.5, training=True, inplace=False):
    """F.dropout with a fast CPU mask; anything else goes to torch's own."""
    if not (training and 0 < p < 1 and input.device.type == "cpu" and input.is_floating_point()):
        return F.dropout(input, p, training, inplace)
    keep_units = round((1 - p) * 65536)  # keep probability in steps of 1/65536
    n = input.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-2**63, 2**63 - 1)
    uniform16 = words.view(torch.int16)[:n]  # each in [-32768, 32767], uniform
    dense = input.is_contiguous() or input.is_contiguous(memory_format=torch.channels_last)
    # The mask takes the input's layout, so the product (and its gradient) keeps it too.
    uniform16 = uniform16.as_strided(input.shape, input.stride()) if dense else uniform16.view(input.shape)
    mask = (uniform16 < keep_units - 32768).to(input.dtype).mul_(65536 / keep_units)
    return input.mul_(mask) if inplace else input * mask


def _flattens_nhwc_activation(func, args, kwargs) -> bool:
    """A flatten of a 4-D channels_last activation into (N, C*H*W), that needs a gradient or is a view:
    eager torch copies it (C and H*W cannot merge in NHWC) or, for a view, fails, so copying it first
    changes nothing but the gradient's layout."""
    x = args[0] if args else None
    if not (isinstance(x, torch.Tensor) and x.dim() == 4 and (x.requires_grad or func is torch.Tensor.view)
            and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)):
        return False
    if func in (torch.flatten, torch.Tensor.flatten):
        start = kwargs.get("start_dim", args[1] if len(args) > 1 else 0)
        end = kwargs.get("end_dim", args[2] if len(args) > 2 else -1)
        return start in (1, -3) and end in (3, -1)
    shape = kwargs.get("shape", args[1:])
    if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)):
        shape = tuple(shape[0])
    n, features = x.shape[0], x.shape[1] * x.shape[2] * x.shape[3]
    return tuple(shape) in ((n, -1), (n, features), (-1, features))


class _NchwCopyWithNhwcGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.contiguous()

    @staticmethod
    def backward(ctx, grad):
        return grad.contiguous(memory_format=torch.channels_last)
