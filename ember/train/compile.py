"""`model.compile(...)`: turn names and options into the objects the trainer runs with."""
from dataclasses import dataclass, field

import torch
from torch.nn.modules.lazy import LazyModuleMixin

from ember.define.layers.base import Layer
from ember.define.layers.conv import Conv2D
from ember.train import losses, metrics as metrics_module
from ember.train.hardware import resolve_device
from ember.train.optimizers import build_optimizer
from ember.train.precision import Precision


@dataclass
class CompileConfig:
    optimizer: torch.optim.Optimizer | None
    loss_fn: object
    loss_name: str | None
    from_logits: bool
    metrics: list
    device: torch.device
    precision: Precision
    lr_schedule: object = None
    lr_schedule_interval: str = "epoch"
    warmup_steps: float = 0
    clip_grad_norm: float | None = None
    accumulate_steps: int = 1
    channels_last: bool = False
    jit_compile: bool = False
    fast_dropout: bool = False
    reuse_host_memory: bool = True
    strategy: object = None
    spec: dict = field(default_factory=dict)  # JSON description, stored by save()
    optimizer_factory: object = None  # set while lazily built layers have no parameters yet
    layout_checked: bool = False  # channels_last is applied and checked on the first batch

    def ensure_optimizer(self, model):
        if self.optimizer is None:
            self.optimizer = self.optimizer_factory()
            self.optimizer_factory = None
        return self.optimizer


def compile_config(model, optimizer="adamw", loss=None, metrics=None, *, from_logits=None, lr=None,
                   learning_rate=None, lr_schedule=None, lr_schedule_interval="epoch", warmup_steps=0,
                   clip_grad_norm=None, accumulate_steps=1, precision="auto", channels_last="auto",
                   jit_compile=False, fused="auto", fast_dropout="auto", reuse_host_memory=True, device=None,
                   strategy=None,
                   **optimizer_options):
    """Options:
    - optimizer: a `torch.optim.Optimizer`, a name ("adamw", "adam", "sgd", "rmsprop", ...) whose
      hyper-parameters are keyword arguments here (`lr=`, `weight_decay=`, `momentum=`...), an
      optimizer class, or a callable `params -> optimizer`.
    - loss: a name, a callable `(y_pred, y_true) -> loss` or an `nn.Module`; None for models whose
      output carries `.loss` (Hugging Face). `from_logits` as in Keras.
    - metrics: names or torchmetrics objects.
    - lr_schedule: "cosine", "linear" (warmup then linear decay), "constant" or a callable
      `optimizer -> scheduler`, stepped every "epoch" or "batch" (`lr_schedule_interval`);
      `warmup_steps`: a count, or a ratio of the run when below 1.
    - clip_grad_norm, accumulate_steps.
    - precision: "auto" | "fp32" | "bf16" | "fp16"; channels_last: "auto" | True | False;
      jit_compile: torch.compile the forward and loss; fused: fused optimizer kernels ("auto");
      fast_dropout: "auto" | True | False, dropout masks drawn 3-4x faster than torch's serial CPU
      ones (ember/train/fast_paths.py; auto: on the CPU); reuse_host_memory: keep freed CPU memory
      in the process (ember/train/host_memory.py). This one is process-wide: glibc's malloc
      settings change for the whole process, once, at this model's first fit/evaluate/predict.
    - device: "cuda", "cpu", ... (default: CUDA when available); strategy: see ember.distributed.
    """
    if accumulate_steps < 1 or int(accumulate_steps) != accumulate_steps:
        raise ValueError(f"accumulate_steps must be a positive integer, got {accumulate_steps}")
    if lr_schedule_interval not in ("epoch", "batch"):
        raise ValueError(f"lr_schedule_interval must be 'epoch' or 'batch', got {lr_schedule_interval!r}")
    device = resolve_device(device)
    model.to(device)
    if channels_last == "auto":
        # Convolutions run fastest on NHWC memory; this changes strides, not semantics.
        channels_last = any(isinstance(m, (torch.nn.Conv2d, Conv2D)) for m in model.modules())
    if fast_dropout == "auto":
        fast_dropout = device.type == "cpu"  # torch's CPU masks are serial on AMD and Intel alike

    loss_fn, loss_name, from_logits = losses.get_loss(loss, from_logits)
    metric_objects = [metrics_module.get_metric(m, from_logits) for m in (metrics or [])]
    for m in metric_objects:
        if isinstance(m, metrics_module.TorchMetric):
            m.metric.to(device)

    rate = learning_rate if learning_rate is not None else lr
    if rate is not None:
        optimizer_options["lr"] = rate

    def make_optimizer():
        return build_optimizer(optimizer, model, fused=fused, **optimizer_options)

    unbuilt = any((isinstance(m, Layer) and not m.built)
                  or (isinstance(m, LazyModuleMixin) and m.has_uninitialized_params()) for m in model.modules())
    spec = {
        "optimizer": optimizer if isinstance(optimizer, str) else type(optimizer).__name__,
        "optimizer_options": {k: v for k, v in optimizer_options.items() if isinstance(v, (int, float, str, bool))},
        "loss": loss_name, "from_logits": from_logits,
        "metrics": [m.name for m in metric_objects],
        "lr_schedule": lr_schedule if isinstance(lr_schedule, str) else None,
        "clip_grad_norm": clip_grad_norm, "accumulate_steps": accumulate_steps, "precision": precision,
    }
    return CompileConfig(
        optimizer=None if unbuilt else make_optimizer(),
        optimizer_factory=make_optimizer if unbuilt else None,
        loss_fn=loss_fn, loss_name=loss_name, from_logits=from_logits, metrics=metric_objects,
        device=device, precision=Precision(precision, device), lr_schedule=lr_schedule,
        lr_schedule_interval=lr_schedule_interval, warmup_steps=warmup_steps, clip_grad_norm=clip_grad_norm,
        accumulate_steps=int(accumulate_steps), channels_last=bool(channels_last), jit_compile=jit_compile,
        fast_dropout=bool(fast_dropout), reuse_host_memory=bool(reuse_host_memory), strategy=strategy, spec=spec,
    )
