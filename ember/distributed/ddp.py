"""Data parallel training: every rank holds the whole model; gradients are all-reduced."""
import contextlib

from torch.nn.parallel import DistributedDataParallel

from ember.distributed.data_parallel import DataParallel


class DDP(DataParallel):
    """`fit(..., strategy="ddp")` or `strategy=DDP(find_unused_parameters=True)`.

    In a job of several processes (torchrun / `ember launch`, Slurm's srun, a Kubeflow
    PyTorchJob, Ray Train: environment.py), wraps the model in torch's
    DistributedDataParallel (which broadcasts rank 0's weights); alone, trains as one process.
    `options` go to DistributedDataParallel; `timeout` (seconds) bounds every collective.
    """

    def __init__(self, timeout=None, **options):
        super().__init__(timeout)
        self.options = options
        self.wrapped = None

    def setup(self, model, batches, state):
        model = super().setup(model, batches, state)
        if not self.grouped:
            return model
        if self.wrapped is None or self.wrapped.module is not model:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.wrapped = DistributedDataParallel(model, device_ids=device_ids, **self.options)
        return self.wrapped

    def gradient_sync(self, model, sync):
        # Accumulation micro-batches skip the all-reduce; the last one syncs the sum.
        if sync or not isinstance(model, DistributedDataParallel):
            return contextlib.nullcontext()
        return model.no_sync()
