"""The hooks a training strategy plugs into `Trainer.train_step` (one process: all no-ops)."""
import contextlib

import torch


class SingleProcess:
    """Train in this process on one device."""

    is_main = True
    rank = 0
    world_size = 1
    loss_weight = 1.0  # DDP scales each rank's loss so uneven shards average correctly

    def setup(self, model, batches, compiled):
        """Prepare the model and the batches; return the module to call forward on."""
        return model

    def gradient_sync(self, model, sync: bool):
        return contextlib.nullcontext()

    def clip_grad_norm(self, model, max_norm):
        return torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm, foreach=True)

    def reduce_sum(self, total: torch.Tensor, count: int):
        return total, count

    def reduce_metric(self, metric) -> None:
        pass


def get_strategy(strategy):
    if strategy is None or strategy == "single":
        return SingleProcess()
    if isinstance(strategy, str):
        raise ValueError(f"unknown strategy {strategy!r}; known: 'single'")
    return strategy
