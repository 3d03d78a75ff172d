"""Fully sharded data parallel training on FSDP2 (`torch.distributed.fsdp.fully_shard`).

Parameters, gradients and optimizer state are sharded across ranks; each repeated
block (a transformer layer, a residual stage) becomes its own all-gather /
reduce-scatter unit, so only one block is unsharded at a time.
"""
import contextlib
from collections import Counter

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import CPUOffloadPolicy, FSDPModule, MixedPrecisionPolicy, OffloadPolicy, fully_shard

from ember.distributed.data_parallel import DataParallel
from ember.distributed.environment import init_process_group

_DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}


class FSDP(DataParallel):
    """`fit(..., strategy="fsdp")` or `strategy=FSDP(cpu_offload=True, mixed_precision="bf16")`.

    - cpu_offload: keep sharded parameters, gradients and optimizer state in CPU memory.
    - mixed_precision: None, "bf16" or "fp16" (compute and all-gather in that dtype, reduce
      gradients in float32), or a `torch.distributed.fsdp.MixedPrecisionPolicy`.
    - wrap: which sub-modules get their own shard group: None finds repeated blocks (same
      class, at least twice, inside a ModuleList or Sequential); or module classes; or a
      callable `module -> bool`. The whole model is always the root group.
    - timeout: seconds before a stuck collective fails.

    Without a launcher it runs as one process (a process group of one).
    """

    contiguous_parameters = True  # FSDP2 refuses non-contiguous parameters (channels_last convolutions)

    def __init__(self, cpu_offload=False, mixed_precision=None, wrap=None, timeout=None):
        super().__init__(timeout)
        self.cpu_offload = cpu_offload
        self.mixed_precision = mixed_precision
        self.wrap = wrap

    def setup(self, model, batches, state):
        model = super().setup(model, batches, state)
        if isinstance(model, FSDPModule):
            return model  # already sharded by an earlier fit()
        init_process_group(self.job, self.device, self.timeout)
        if self.grouped:
            _broadcast_from_rank0(model)  # every rank starts from rank 0's initial weights
        names = {id(p): name for name, p in model.named_parameters()}
        mesh = init_device_mesh(self.device.type, (self.world_size,))
        policies = {"mesh": mesh, "mp_policy": self._mixed_precision_policy(),
                    "offload_policy": CPUOffloadPolicy(pin_memory=self.device.type == "cuda")
                    if self.cpu_offload else OffloadPolicy()}
        for block in shard_blocks(model, self.wrap):
            fully_shard(block, **policies)
        fully_shard(model, **policies)
        if dist.get_backend() == "gloo":
            # gloo's ReduceOp.AVG summed instead of averaging in some torch releases
            # (pytorch/pytorch#162338): have FSDP reduce with SUM and divide by itself.
            for module in model.modules():
                if isinstance(module, FSDPModule):
                    module.set_force_sum_reduction_for_comms(True)
        if state is not None and state.optimizer is not None:
            _rebind_optimizer(state.optimizer, names, dict(model.named_parameters()))
        return model

    def _mixed_precision_policy(self):
        if isinstance(self.mixed_precision, MixedPrecisionPolicy):
            return self.mixed_precision
        if self.mixed_precision in (None, "fp32", "float32"):
            return MixedPrecisionPolicy()
        if self.mixed_precision not in _DTYPES:
            raise ValueError(f"mixed_precision must be None, 'bf16', 'fp16' or a MixedPrecisionPolicy, "
                             f"got {self.mixed_precision!r}")
        return MixedPrecisionPolicy(param_dtype=_DTYPES[self.mixed_precision], reduce_dtype=torch.float32)

    def gradient_sync(self, model, sync):
        if isinstance(model, FSDPModule):
            model.set_requires_gradient_sync(sync)  # accumulation micro-batches skip the reduce-scatter
        return contextlib.nullcontext()


def shard_blocks(model: nn.Module, wrap=None) -> list:
    """The sub-modules to shard as their own groups, innermost first (fully_shard goes bottom-up)."""
    if wrap is None:
        blocks = []
        for container in model.modules():
            if isinstance(container, (nn.ModuleList, nn.Sequential)):
                children = list(container.children())
                repeats = Counter(type(child) for child in children)
                blocks += [child for child in children if repeats[type(child)] > 1
                           and any(True for _ in child.children()) and _trainable(child)]
    elif callable(wrap) and not isinstance(wrap, type):
        blocks = [m for m in model.modules() if m is not model and wrap(m) and _trainable(m)]
    else:
        classes = tuple(wrap) if isinstance(wrap, (list, tuple, set)) else (wrap,)
        if not all(isinstance(c, type) and issubclass(c, nn.Module) for c in classes):
            raise TypeError(f"wrap must be None, nn.Module classes or a callable module -> bool, got {wrap!r}")
        blocks = [m for m in model.modules() if m is not model and isinstance(m, classes) and _trainable(m)]
    order = {id(m): depth for m, depth in _depths(model)}
    return sorted(blocks, key=lambda m: -order[id(m)])


def _depths(module, depth=0):
    yield module, depth
    for child in module.children():
        yield from _depths(child, depth + 1)


def _trainable(module):
    return any(p.requires_grad for p in module.parameters())


@torch.no_grad()
def _broadcast_from_rank0(model):
    for tensor in [*model.parameters(), *model.buffers()]:
        dist.broadcast(tensor.data, src=0)


def _rebind_optimizer(optimizer, names_before, params_after):
    """fully_shard replaces each parameter by a sharded one: point the optimizer at those."""
    if optimizer.state:
        raise ValueError("FSDP shards the optimizer state, but this optimizer has already taken steps on "
                         "the unsharded model: compile() again, or pass strategy='fsdp' to the first fit()")
    for group in optimizer.param_groups:
        group["params"] = [params_after[names_before[id(p)]] for p in group["params"]]
        if group.get("fused") and not isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
            # Sharded (DTensor) parameters have fused kernels for Adam and AdamW only (not, e.g., SGD).
            group["fused"], group["foreach"] = False, True
