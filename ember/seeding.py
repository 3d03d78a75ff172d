"""One call that makes a run repeatable."""
import random

import numpy as np
import torch


def seed(n: int, deterministic: bool = False) -> None:
    """Seed python, numpy and torch (CPU and every CUDA device).

    `deterministic=True` also asks torch for deterministic algorithms, which exact
    resume needs on GPUs; on the CPU the default kernels already are.
    """
    random.seed(n)
    np.random.seed(n % 2**32)
    torch.manual_seed(n)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
