"""Turning torch's bare errors about bad data into messages that name what was expected."""
import warnings

import torch
from torch import nn

from ember.errors import ShapeError
from ember.train.data import call_model
from ember.train.losses import CLASSIFICATION_LOSSES


def explain_forward_error(model, inputs, error):
    """Find the innermost layer that failed and say what it expected and what it got."""
    failing = []

    def pre_hook(module, args):
        failing.append((module, args))

    def post_hook(module, args, output):
        failing.pop()

    named = {m: n for n, m in model.named_modules()}
    handles = []
    for module in named:
        handles.append(module.register_forward_pre_hook(pre_hook))
        handles.append(module.register_forward_hook(post_hook))
    try:
        with torch.no_grad():
            call_model(model, inputs)
    except Exception:
        pass
    finally:
        for h in handles:
            h.remove()
    if not failing:
        return error
    module, args = failing[-1]
    received = tuple(args[0].shape) if args and isinstance(args[0], torch.Tensor) else "?"
    dtype = args[0].dtype if args and isinstance(args[0], torch.Tensor) else None
    expected = _expected_input(module)
    name = named.get(module) or type(module).__name__
    detail = str(error).splitlines()[0]
    if dtype is not None and ("dtype" in detail or "scalar type" in detail or "expected" in detail.lower()
                              and "Long" in detail):
        detail += f" (input dtype {dtype})"
    return ShapeError(name, type(module).__name__, expected, received, detail)


def _expected_input(module):
    if isinstance(module, nn.Linear):
        return ("batch", "...", module.in_features)
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        spatial = ("L",) if isinstance(module, nn.Conv1d) else ("H", "W") if isinstance(module, nn.Conv2d) else ("D", "H", "W")
        return ("batch", module.in_channels) + spatial
    if isinstance(module, nn.Embedding):
        return "integer ids < %d" % module.num_embeddings
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return ("batch", module.num_features, "...")
    return getattr(module, "input_shape", None) or "?"


def check_targets(outputs, targets, recipe, data=None):
    """Once, on the first batch: labels must be valid class indices for the model's outputs,
    and a loss that expects probabilities should not be fed logits."""
    if recipe is not None and not recipe.from_logits and isinstance(outputs, torch.Tensor):
        o = outputs.detach()
        if o.numel() and (o.min() < 0 or o.max() > 1):
            warnings.warn(f"loss {recipe.loss_name!r} expects probabilities (as in Keras) but the model outputs "
                          f"values in [{float(o.min()):.3g}, {float(o.max()):.3g}]: end the model with a softmax/"
                          "sigmoid, or compile(..., from_logits=True), or use loss='cross_entropy'",
                          RuntimeWarning, stacklevel=4)
    if not isinstance(outputs, torch.Tensor) or outputs.dim() < 2 or not isinstance(targets, torch.Tensor):
        return
    if recipe is None or recipe.loss_name not in CLASSIFICATION_LOSSES:
        return
    if targets.is_floating_point():
        if outputs.shape == targets.shape:
            return  # class probabilities as targets
        raise ValueError(f"{recipe.loss_name} expects integer class labels, got {targets.dtype} targets "
                         f"of shape {tuple(targets.shape)}")
    num_classes = outputs.shape[-1]
    all_targets = getattr(data, "targets", None)
    checked = all_targets if isinstance(all_targets, torch.Tensor) else targets
    low, high = int(checked.min()), int(checked.max())
    if low < 0 or high >= num_classes:
        raise ValueError(f"labels must be in [0, {num_classes}) for a model with {num_classes} outputs, "
                         f"got labels from {low} to {high}")


def explain_loss_error(outputs, targets, recipe, error, where: str):
    """A loss that failed on labels outside the model's classes (torch says only "Target 7 is out of
    bounds"): name where, the labels and the valid range. Other failures come back unchanged."""
    if recipe is None or not isinstance(outputs, torch.Tensor) or not isinstance(targets, torch.Tensor) \
            or recipe.loss_name not in CLASSIFICATION_LOSSES or targets.is_floating_point() or not targets.numel():
        return error
    num_classes = outputs.shape[-1]
    bad = targets[(targets < 0) | (targets >= num_classes)]
    if not bad.numel():
        return error
    shown = ", ".join(str(v) for v in bad.unique()[:5].tolist())
    return ValueError(f"{where}: label {shown} is out of range: labels must be in [0, {num_classes}) for a model "
                      f"with {num_classes} outputs")
