"""`compile(..., jit_compile=True)`: torch.compile of the model's forward, falling back to eager.

The batch dimension is compiled as dynamic, so a short last batch does not recompile.
It is opt-in: on an AVX2-only CPU it made the seed's ConvNet slower (0.6x).
"""
import warnings

import torch


class CompiledForward:
    """Calls the torch.compile'd module; if compilation fails, warns once and runs eagerly."""

    def __init__(self, module):
        self.module = module
        self.compiled = torch.compile(module, dynamic=True)
        self.fell_back = False

    def __call__(self, *args, **kwargs):
        if not self.fell_back:
            try:
                return self.compiled(*args, **kwargs)
            except torch._dynamo.exc.TorchDynamoException as error:
                self.fell_back = True
                warnings.warn(f"torch.compile failed ({type(error).__name__}: {str(error).splitlines()[0]}); "
                              "training continues in eager mode", RuntimeWarning, stacklevel=2)
        return self.module(*args, **kwargs)

    def __getattr__(self, name):
        # Strategies reach the wrapped module's methods (e.g. DDP's no_sync) through here.
        return getattr(self.module, name)
