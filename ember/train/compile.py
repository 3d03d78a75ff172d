"""`model.compile(...)`: the recipe of a training run, checked and frozen.

A `TrainingRecipe` says how to train (which optimizer with which options, loss, metrics,
precision, schedule, fast paths); it never changes. The objects a run changes as it trains
(the optimizer, gradient scaler, metrics, position...) are built from it by `TrainState`.
"""
import numbers
from dataclasses import dataclass, field
from types import MappingProxyType

import torch
from torch.nn.modules.lazy import LazyModuleMixin

from ember.train import losses, metrics as metrics_module
from ember.train.hardware import resolve_device
from ember.train.precision import resolve_precision


@dataclass(frozen=True)
class TrainingRecipe:
    optimizer: object  # a name, an Optimizer class or instance, or a callable params -> optimizer
    optimizer_options: MappingProxyType
    fused: object
    loss: object  # a Loss, a list of them or a dict of them by output name (ember/train/outputs.py); or None
    loss_name: object  # the loss's name, or the list / dict of them (None where an output has no loss)
    from_logits: bool
    metrics: object  # names or metric objects, as given: a list, a list per output, or a dict by output name
    metric_names: object
    device: torch.device
    precision: str  # resolved: "fp32", "bf16" or "fp16"
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
    loss_weights: object = None  # a list, or a dict by output name, of each output's factor in the total loss
    asked_precision: str = field(default="auto", repr=False)

    def describe(self) -> dict:
        """The recipe as JSON (stored in model files by save())."""
        return {
            "optimizer": self.optimizer if isinstance(self.optimizer, str) else type(self.optimizer).__name__,
            "optimizer_options": {k: v for k, v in self.optimizer_options.items()
                                  if isinstance(v, (int, float, str, bool))},
            "loss": self.loss_name, "loss_weights": self.loss_weights, "from_logits": self.from_logits,
            "metrics": self.metric_names,
            "lr_schedule": self.lr_schedule if isinstance(self.lr_schedule, str) else None,
            "clip_grad_norm": self.clip_grad_norm, "accumulate_steps": self.accumulate_steps,
            "precision": self.asked_precision,
        }


def compile_recipe(model, optimizer="adamw", loss=None, metrics=None, *, loss_weights=None, from_logits=None, lr=None,
                   learning_rate=None, lr_schedule=None, lr_schedule_interval="epoch", warmup_steps=0,
                   clip_grad_norm=None, accumulate_steps=1, precision="auto", channels_last="auto",
                   jit_compile=False, fused="auto", fast_dropout="auto", reuse_host_memory=True, device=None,
                   strategy=None, **optimizer_options) -> TrainingRecipe:
    """Options:
    - optimizer: a `torch.optim.Optimizer`, a name ("adamw", "adam", "sgd", "rmsprop", ...) whose
      hyper-parameters are keyword arguments here (`lr=`, `weight_decay=`, `momentum=`...), an
      optimizer class, or a callable `params -> optimizer`.
    - loss: a name, a callable `(y_pred, y_true) -> loss` or an `nn.Module`; None for models whose
      output carries `.loss` (Hugging Face). `from_logits` as in Keras. For a model with several
      outputs (ember/train/outputs.py): one loss for every output, a list (one per output, in order)
      or a dict by output name (outputs left out get no loss); `loss_weights` as a list or dict: the
      total loss is the weighted sum.
    - metrics: names or torchmetrics objects; with several outputs, a list with one entry (a metric or
      a list of them) per output, or a dict by output name.
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

    The model moves to the device here.
    """
    if accumulate_steps < 1 or int(accumulate_steps) != accumulate_steps:
        raise ValueError(f"accumulate_steps must be a positive integer, got {accumulate_steps}")
    if lr_schedule_interval not in ("epoch", "batch"):
        raise ValueError(f"lr_schedule_interval must be 'epoch' or 'batch', got {lr_schedule_interval!r}")
    weights = loss_weights.values() if isinstance(loss_weights, dict) else loss_weights \
        if isinstance(loss_weights, (list, tuple)) else [] if loss_weights is None else [loss_weights]
    if not all(isinstance(w, numbers.Real) and not isinstance(w, bool) for w in weights):
        raise ValueError(f"loss_weights must be a number, a list of numbers (one per output) or a dict of them by "
                         f"output name, got {loss_weights!r}")
    device = resolve_device(device)
    model.to(device)
    if channels_last == "auto":
        # Convolutions run fastest on NHWC memory; this changes strides, not semantics.
        channels_last = any(isinstance(m, torch.nn.Conv2d) or getattr(m, "prefers_channels_last", False)
                            for m in model.modules())
    if fast_dropout == "auto":
        fast_dropout = device.type == "cpu"  # torch's CPU masks are serial on AMD and Intel alike
    loss, loss_name, from_logits = compile_losses(loss, from_logits)
    rate = learning_rate if learning_rate is not None else lr
    if rate is not None:
        optimizer_options["lr"] = rate
    metric_names = _map(lambda m: metrics_module.get_metric(m, from_logits).name, metrics or [], nested=True)
    return TrainingRecipe(
        optimizer=optimizer, optimizer_options=MappingProxyType(dict(optimizer_options)), fused=fused,
        loss=loss, loss_name=loss_name, from_logits=from_logits, metrics=metrics or (), loss_weights=loss_weights,
        metric_names=metric_names, device=device, precision=resolve_precision(precision, device),
        lr_schedule=lr_schedule, lr_schedule_interval=lr_schedule_interval, warmup_steps=warmup_steps,
        clip_grad_norm=clip_grad_norm, accumulate_steps=int(accumulate_steps), channels_last=bool(channels_last),
        jit_compile=jit_compile, fast_dropout=bool(fast_dropout), reuse_host_memory=bool(reuse_host_memory),
        strategy=strategy, asked_precision=precision,
    )


def compile_losses(loss, from_logits):
    """(Loss or its list / dict, the name(s), from_logits): a name, callable or module becomes a `Loss`."""
    if isinstance(loss, (list, tuple, dict)):
        built = _map(lambda one: losses.get_loss(one, from_logits), loss)
        names = _map(lambda one: None if one is None else one.name, built)
        return built, names, True if from_logits is None else from_logits
    built = losses.get_loss(loss, from_logits)
    return built, built and built.name, True if built is None else built.from_logits


def _map(function, structure, nested=False):
    """`function` on each entry of a list or dict (and of the lists in it when `nested`)."""
    if isinstance(structure, dict):
        return {key: _map(function, value, nested) if nested else function(value) for key, value in structure.items()}
    if isinstance(structure, (list, tuple)):
        return [_map(function, value, nested) if nested else function(value) for value in structure]
    return function(structure)


def unbuilt_layers(model) -> bool:
    """Whether some layer gets its parameters only on its first call (Keras' `built`, torch's lazy modules)."""
    return any(getattr(m, "built", True) is False
               or (isinstance(m, LazyModuleMixin) and m.has_uninitialized_params()) for m in model.modules())
