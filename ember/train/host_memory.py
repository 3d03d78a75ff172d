"""Keep freed CPU tensor memory in the process instead of giving it back to the kernel after each step.

glibc's malloc serves blocks above its mmap threshold (128 KiB at first, adjusted up to 32 MiB as
blocks are freed) with fresh mmaps and trims the heap top when a lot is free, so a training step's
activations and gradients are returned to the kernel and page-faulted back in, zeroed, on the next
step. On the seed ConvNet (batch 64) that is ~3,400 page faults and a fifth of each step spent in the
kernel. Pinning the mmap threshold at its maximum and switching trimming off makes freed blocks
reusable, as PyTorch's caching allocator does on GPUs: measured 1.3x more samples/s on the seed
ConvNet. The cost: the process keeps its peak heap until it exits. Linux with glibc only; elsewhere
this does nothing.
"""
import ctypes
import ctypes.util
import platform

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_MAX = 4 * 1024 * 1024 * ctypes.sizeof(ctypes.c_long)  # glibc's upper limit: 32 MiB
_KEEP_EVERYTHING = 2**31 - 1  # mallopt takes an int: never trim below ~2 GiB of free heap top

_state = {"kept": False}


def glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (the one with mallopt's thresholds), else None."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def freed_memory_kept() -> bool:
    """Whether keep_freed_memory() has taken effect in this process."""
    return _state["kept"]


def keep_freed_memory() -> bool:
    """Make this process reuse freed CPU memory (once; later calls are free). True when in effect."""
    if not _state["kept"]:
        libc = glibc()
        _state["kept"] = bool(libc is not None and libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)
                              and libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_EVERYTHING))
    return _state["kept"]
