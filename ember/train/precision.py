"""Mixed precision as a context and a scaler that are no-ops in fp32 (no `if fp16:` in the step)."""
import contextlib
import warnings

import torch

from ember.train.hardware import native_bf16

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str, device: torch.device) -> str:
    """auto: bf16 where it runs natively, fp16 on GPUs without fast bf16, else fp32."""
    precision = {"float32": "fp32", "32": "fp32", "bfloat16": "bf16", "float16": "fp16",
                 "16": "fp16", "mixed_float16": "fp16", "mixed_bfloat16": "bf16"}.get(str(precision), str(precision))
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        if native_bf16(device):
            return "bf16"
        return "fp16" if device.type == "cuda" else "fp32"
    if precision == "bf16" and device.type == "cpu" and not native_bf16(device):
        warnings.warn("bf16 was asked for on a CPU without native bf16 (no avx512_bf16/amx_bf16): "
                      "it is emulated and many times slower than fp32", stacklevel=3)
    if precision == "fp16" and device.type == "cpu":
        warnings.warn("fp16 autocast on the CPU is emulated and slow; use precision='auto'", stacklevel=3)
    return precision


class Precision:
    """The autocast context and gradient scaler of a resolved precision ("fp32", "bf16" or "fp16")."""

    def __init__(self, name: str, device: torch.device):
        self.name = name
        self.device_type = device.type
        self.dtype = _DTYPES.get(self.name)
        # Loss scaling only matters for fp16's narrow exponent range.
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.name == "fp16")

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)
