"""Optimizers by name, with weight decay kept off biases and norm weights, fused where torch can."""
import torch

_OPTIMIZERS = {
    "adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop, "adagrad": torch.optim.Adagrad, "adadelta": torch.optim.Adadelta,
    "adamax": torch.optim.Adamax, "nadam": torch.optim.NAdam, "radam": torch.optim.RAdam,
}
_DEFAULT_LR = {"sgd": 0.01, "adadelta": 1.0}
_FUSABLE = (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD, torch.optim.Adagrad)


def build_optimizer(spec, model, fused="auto", **kwargs):
    """`spec` is an Optimizer (used as is), a name, an Optimizer class or a callable params -> optimizer."""
    if isinstance(spec, torch.optim.Optimizer):
        if kwargs:
            raise TypeError(f"optimizer options {sorted(kwargs)} only apply to an optimizer given by name")
        return spec
    if isinstance(spec, str):
        name = spec.lower()
        if name not in _OPTIMIZERS:
            raise ValueError(f"unknown optimizer {spec!r}; known: {', '.join(sorted(_OPTIMIZERS))}, "
                             "or pass a torch.optim.Optimizer or a callable params -> optimizer")
        cls = _OPTIMIZERS[name]
        kwargs.setdefault("lr", _DEFAULT_LR.get(name, 1e-3))
    elif isinstance(spec, type) and issubclass(spec, torch.optim.Optimizer):
        cls = spec
    elif callable(spec):
        return spec(model.parameters())
    else:
        raise TypeError(f"optimizer must be a name, a torch.optim.Optimizer or a callable, got {spec!r}")

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (is it built? give the first layer input_shape=)")
    weight_decay = kwargs.pop("weight_decay", None)
    if weight_decay:
        # Decay matrices and kernels only: biases and norm scales (1-d) are not decayed,
        # as in Hugging Face's Trainer and nanoGPT.
        groups = [{"params": [p for p in params if p.dim() > 1], "weight_decay": weight_decay},
                  {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0}]
        params = [g for g in groups if g["params"]]
    elif weight_decay is not None:
        kwargs["weight_decay"] = weight_decay
    if fused and issubclass(cls, _FUSABLE) and "fused" not in kwargs and "foreach" not in kwargs:
        device_types = {p.device.type for p in model.parameters()}
        if fused is True or (all(p.dtype.is_floating_point for p in model.parameters())
                             and device_types <= {"cpu", "cuda"}):
            kwargs["fused"] = True
    return cls(params, **kwargs)
