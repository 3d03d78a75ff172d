"""What DDP and FSDP share: the job's process group (whatever started the job:
environment.py), the global batch split across ranks, and losses and metrics summed
across ranks before callbacks read them.

`batch_size` is the global batch, as in Keras' MirroredStrategy: every rank walks the
same global batches (same order, seeded from rank 0) and takes its contiguous share of
each (the batches split themselves: `split_across`, ember/train/data.py). A rank's share
carries its weight `local_n * world_size / global_n` to the training
step (`ember.train.data.Batch.weight`), so the averaged
gradient is the mean over the global batch even when the last batch does not split
evenly (a rank whose share is empty still runs forward and backward, contributing zero).
"""
import copy

import torch
import torch.distributed as dist

from ember.distributed.environment import detect_job, init_process_group, rank_device, report_errors_to_launcher
from ember.distributed.strategy import SingleProcess


class DataParallel(SingleProcess):
    def __init__(self, timeout=None):
        self.job = detect_job()
        self.rank = self.job.rank if self.job else 0
        self.world_size = self.job.world_size if self.job else 1
        self.is_main = self.rank == 0
        self.timeout = timeout
        self.device = rank_device(self.job) if self.job else None
        if self.job:
            report_errors_to_launcher()
            init_process_group(self.job, self.device, timeout)

    @property
    def grouped(self) -> bool:
        """True when other processes take part (collectives are needed)."""
        return self.world_size > 1

    def setup(self, model, batches, state):
        self.device = torch.device(state.recipe.device) if state is not None else self.device
        if self.grouped and self.device.type == "cuda":
            self.device = torch.device("cuda", torch.cuda.current_device())
            model.to(self.device)
        if self.grouped:
            if batches.num_samples is not None and batches.num_samples < self.world_size:
                raise ValueError(f"{batches.num_samples} training samples cannot be split across "
                                 f"{self.world_size} processes: give every process at least one sample")
            batches.split_across(self.rank, self.world_size, same_seed=self._from_rank0)
        return model

    def setup_validation(self, batches):
        # Each rank evaluates its share of every validation batch; running_logs sums the loss and the
        # metric state over ranks, so the logged values are those of the whole set, computed once.
        if self.grouped:
            batches.split_across(self.rank, self.world_size)

    def _from_rank0(self, value: int) -> int:
        tensor = torch.tensor([value], dtype=torch.int64, device=self._comm_device())
        dist.broadcast(tensor, src=0)
        return int(tensor.item())

    def _comm_device(self):
        return self.device if self.device is not None and self.device.type == "cuda" else torch.device("cpu")

    # -------------------------------------------------------- reductions
    def batch_logs(self, logs):
        # Every rank reads (and so reduces) the batch logs at every step: a progress bar
        # that redraws on a timer on rank 0 only would otherwise leave the others out of
        # the all-reduce, and a callback acting on them would decide differently per rank.
        return dict(logs) if self.grouped else logs

    def reduce_sum(self, total, count):
        if not self.grouped:
            return total, count
        packed = torch.stack([total.double(), torch.tensor(float(count), dtype=torch.float64, device=total.device)])
        dist.all_reduce(packed)
        return packed[0], int(packed[1].item())

    def reduce_metric(self, metric):
        """A copy of `metric` whose state is summed over all ranks (the running state stays local)."""
        state = metric.state_dict()
        tensors = {name: t for name, t in state.items() if isinstance(t, torch.Tensor)}
        if not self.grouped or not metric.all_reduce or not tensors:
            return metric
        flat = torch.cat([t.detach().reshape(-1).double() for t in tensors.values()])
        dist.all_reduce(flat)
        parts = flat.split([t.numel() for t in tensors.values()])
        reduced = copy.copy(metric)
        reduced.load_state_dict({**state, **{name: part.view_as(t).to(t.dtype)
                                             for (name, t), part in zip(tensors.items(), parts)}})
        return reduced

    def gather_to_main(self, value) -> list:
        if not self.grouped:
            return [value]
        gathered = [None] * self.world_size if self.is_main else None
        dist.gather_object(value, gathered, dst=0)
        return gathered

    def broadcast_from_main(self, value):
        if not self.grouped:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_true(self, flag: bool) -> bool:
        return bool(self._all_reduce_int(int(flag), dist.ReduceOp.MIN)) if self.grouped else flag

    def reduce_max(self, value: int) -> int:
        return self._all_reduce_int(value, dist.ReduceOp.MAX) if self.grouped else value

    def _all_reduce_int(self, value: int, op) -> int:
        reduced = torch.tensor(value, dtype=torch.int64, device=self._comm_device())
        dist.all_reduce(reduced, op=op)
        return int(reduced)
