"""The hooks a training strategy plugs into `Trainer.train_step` (one process: all no-ops)."""
import contextlib

import torch


class SingleProcess:
    """Train in this process on one device."""

    is_main = True
    rank = 0
    world_size = 1
    contiguous_parameters = False  # whether it shards only contiguous parameters (no channels_last weights)

    def setup(self, model, batches, state):
        """Prepare the model and the batches; return the module to call forward on."""
        return model

    def setup_validation(self, batches):
        """Prepare fit()'s validation batches (across processes: each takes its share of every batch)."""

    def gradient_sync(self, model, sync: bool):
        return contextlib.nullcontext()

    def clip_grad_norm(self, model, max_norm):
        params = [p for p in model.parameters() if p.grad is not None]
        if not all(type(p.grad) is torch.Tensor and p.grad.device.type == "cpu" for p in params):
            return torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
        # On the CPU, reading the norm costs no device sync, and skipping the multiply by a
        # coefficient clamped to exactly 1.0 gives the same bits as clip_grad_norm_.
        norm = torch.nn.utils.get_total_norm([p.grad for p in params], foreach=True)
        if max_norm / (norm + 1e-6) < 1.0:
            torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm, foreach=True)
        return norm

    def batch_logs(self, logs):
        """The batch logs callbacks see (lazy here: reading them syncs the device)."""
        return logs

    def reduce_sum(self, total: torch.Tensor, count: int):
        return total, count

    def reduce_metric(self, metric):
        """The metric to read results from (across processes: one with summed state)."""
        return metric

    # Exchanges between processes that backups need (every process must call them).
    def gather_to_main(self, value) -> list:
        """Every process's `value` in rank order, on the main process (None elsewhere)."""
        return [value]

    def broadcast_from_main(self, value):
        """The main process's `value`, on every process."""
        return value

    def all_true(self, flag: bool) -> bool:
        """Whether `flag` holds in every process."""
        return flag

    def reduce_max(self, value: int) -> int:
        """The largest of every process's `value` (preemption: which signal any process received)."""
        return value
