"""What this machine runs fast: device choice and native bf16 detection.

bf16 autocast is 1.7x faster on a CPU with AVX-512 BF16 or AMX and ~30x slower on
an AVX2-only CPU, so precision is decided from the CPU's flags, never assumed.
"""
import functools
import platform

import torch


def resolve_device(device=None) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@functools.lru_cache(maxsize=None)
def _cpuinfo_field(name: str) -> str | None:
    """The first /proc/cpuinfo line starting with `name`, after its colon; None off Linux."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(name):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_flags() -> frozenset:
    return frozenset((_cpuinfo_field("flags") or "").split())


def cpu_model() -> str:
    """The model name with its family/model numbers: clouds name different CPU generations alike
    ("AMD EPYC" is both an AVX2-only generation and Zen 5 with AVX-512 BF16)."""
    name = _cpuinfo_field("model name") or platform.processor() or platform.machine()
    family, model = _cpuinfo_field("cpu family"), _cpuinfo_field("model\t")
    return f"{name} (family {family} model {model})" if family and model else name


def native_bf16(device: torch.device) -> bool:
    """True where bf16 matmuls/convolutions run in hardware (not emulated)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported() and torch.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())
    return False


def describe_machine() -> str:
    """One line for benchmark output: CPU model, the flags that matter, threads, GPU."""
    interesting = sorted({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "fma"} & cpu_flags())
    line = f"CPU: {cpu_model()} | flags: {' '.join(interesting) or 'n/a'} | torch threads: {torch.get_num_threads()}"
    if torch.cuda.is_available():
        line += f" | GPU: {torch.cuda.get_device_name()}"
    return line + f" | torch {torch.__version__}"
