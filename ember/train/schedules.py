"""Learning-rate schedules, built at fit() time when the number of steps is known."""
import math

import torch

SCHEDULES = ("cosine", "linear", "constant")


def build_schedule(spec, optimizer, *, total_steps, warmup_steps=0):
    """A torch LR scheduler, or None. `total_steps` counts scheduler steps (epochs or batches)."""
    if spec is None:
        return None
    if callable(spec):
        return spec(optimizer)
    if spec not in SCHEDULES:
        raise ValueError(f"unknown lr_schedule {spec!r}; known: {', '.join(SCHEDULES)}, or a callable "
                         "optimizer -> torch.optim.lr_scheduler.LRScheduler")
    if 0 < warmup_steps < 1:  # a ratio of the run, like TrainingArguments' warmup_ratio
        warmup_steps = int(math.ceil(warmup_steps * total_steps))
    warmup_steps = int(warmup_steps)
    if spec == "cosine" and not warmup_steps:
        # The seed's CosineAnnealingLR(T_max=epochs); chainable, so ReduceLROnPlateau composes.
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total_steps, 1))

    def factor(step):
        if step < warmup_steps:
            return step / warmup_steps  # as transformers: the first step has lr 0
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        if spec == "linear":
            return max(0.0, 1.0 - progress)
        if spec == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
