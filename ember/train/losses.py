"""Losses by name, with Keras semantics for Keras names, reduced Keras' way.

`sparse_categorical_crossentropy`, `categorical_crossentropy` and
`binary_crossentropy` take probabilities unless `from_logits=True`, as in Keras;
`cross_entropy` and `bce_with_logits` are PyTorch's (logits).

Every loss is a `Loss`: the batch mean without sample weights; with them Keras'
"sum_over_batch_size", `sum(loss * sample_weight) / number of loss values`, which divides
by the batch size and not by the sum of the weights.
"""
import copy

import torch
import torch.nn.functional as F
from torch import nn

_EPSILON = 1e-7  # Keras clips probabilities to [eps, 1 - eps] before the log


def _sparse_categorical_probs(y_pred, y_true, reduction):
    log_p = torch.log(y_pred.float().clamp(_EPSILON, 1.0 - _EPSILON))
    return F.nll_loss(log_p.flatten(0, -2), y_true.long().flatten(), reduction=reduction)


def _categorical_probs(y_pred, y_true, reduction):
    log_p = torch.log(y_pred.float().clamp(_EPSILON, 1.0 - _EPSILON))
    return _reduce(-(y_true * log_p).sum(-1), reduction)


def _categorical_logits(y_pred, y_true, reduction):
    return _reduce(-(y_true * F.log_softmax(y_pred.float(), -1)).sum(-1), reduction)


def _reduce(values, reduction):
    return values.mean() if reduction == "mean" else values


def _cross_entropy(y_pred, y_true, reduction):
    if y_pred.dim() > 2 and y_true.dim() == y_pred.dim() - 1:
        return F.cross_entropy(y_pred.flatten(0, -2), y_true.long().flatten(), reduction=reduction)
    return F.cross_entropy(y_pred, y_true.long() if not y_true.is_floating_point() else y_true, reduction=reduction)


def _binary_probs(y_pred, y_true, reduction):
    return F.binary_cross_entropy(y_pred.float().clamp(_EPSILON, 1.0 - _EPSILON), _like(y_true, y_pred),
                                  reduction=reduction)


def _binary_logits(y_pred, y_true, reduction):
    return F.binary_cross_entropy_with_logits(y_pred.float(), _like(y_true, y_pred), reduction=reduction)


def _like(y_true, y_pred):
    """Binary targets of shape (N,) against predictions of shape (N, 1), as Keras allows."""
    y_true = y_true.float()
    return y_true.reshape(y_pred.shape) if y_true.numel() == y_pred.numel() else y_true


def _mse(y_pred, y_true, reduction):
    return F.mse_loss(y_pred.float(), _like(y_true, y_pred), reduction=reduction)


def _mae(y_pred, y_true, reduction):
    return F.l1_loss(y_pred.float(), _like(y_true, y_pred), reduction=reduction)


def _huber(y_pred, y_true, reduction):
    return F.huber_loss(y_pred.float(), _like(y_true, y_pred), reduction=reduction)


# name -> (loss on logits, loss on probabilities); None where the distinction is meaningless
_LOSSES = {
    "cross_entropy": (_cross_entropy, None),
    "sparse_categorical_crossentropy": (_cross_entropy, _sparse_categorical_probs),
    "categorical_crossentropy": (_categorical_logits, _categorical_probs),
    "binary_crossentropy": (_binary_logits, _binary_probs),
    "bce": (None, _binary_probs),
    "bce_with_logits": (_binary_logits, None),
    "mse": (_mse, None),
    "mean_squared_error": (_mse, None),
    "mae": (_mae, None),
    "mean_absolute_error": (_mae, None),
    "huber": (_huber, None),
}
# Keras' probability losses default to probabilities; the PyTorch ones to logits.
_PROBABILITY_DEFAULT = {"sparse_categorical_crossentropy", "categorical_crossentropy", "binary_crossentropy", "bce"}
CLASSIFICATION_LOSSES = {"cross_entropy", "sparse_categorical_crossentropy"}


class Loss:
    """`loss(y_pred, y_true, sample_weight=None) -> scalar`. `fn(y_pred, y_true, reduction)` gives the
    batch mean ("mean") or the loss values of every sample (or element) ("none")."""

    def __init__(self, fn, name, from_logits):
        self.fn, self.name, self.from_logits = fn, name, from_logits

    def __call__(self, y_pred, y_true, sample_weight=None):
        if sample_weight is None:
            return self.fn(y_pred, y_true, "mean")
        values = self.fn(y_pred, y_true, "none")
        if values.dim() == 0:
            raise ValueError(f"loss {self.name!r} returns one number per batch, so sample weights cannot weigh its "
                             "samples: return one loss per sample (shape (batch, ...), reduction='none')")
        return weighted_mean(values, sample_weight)


def weighted_mean(values, sample_weight):
    """Keras' "sum_over_batch_size": sum(values * weight) / values.numel(), a sample's weight applying to
    all its values. Weights of shape (batch,) or (batch, steps) for sequence losses."""
    weight = sample_weight.to(values.dtype)
    values = values.reshape(*weight.shape, -1)
    return (values * weight.unsqueeze(-1)).sum() / values.numel()


def _call_user_loss(loss):
    """A callable `(y_pred, y_true) -> loss` as a Loss function: its result is the batch's loss, or the
    per-sample values that Loss reduces."""
    def fn(y_pred, y_true, reduction):
        values = loss(y_pred, y_true)
        return values.mean() if reduction == "mean" and values.dim() else values
    return fn


def _call_module_loss(module):
    """A torch loss module: its own reduction for the batch, a copy with reduction='none' for sample weights."""
    per_sample = copy.copy(module)
    if hasattr(per_sample, "reduction"):
        per_sample.reduction = "none"
    return lambda y_pred, y_true, reduction: module(y_pred, y_true) if reduction == "mean" \
        else per_sample(y_pred, y_true)


def get_loss(loss, from_logits=None) -> Loss | None:
    """A `Loss` for a name, a callable `(y_pred, y_true) -> loss` or an `nn.Module`; None for None."""
    if loss is None:
        return None
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, nn.Module):
        return Loss(_call_module_loss(loss), type(loss).__name__, True)
    if callable(loss):
        return Loss(_call_user_loss(loss), getattr(loss, "__name__", type(loss).__name__), True)
    name = str(loss).lower()
    if name not in _LOSSES:
        raise ValueError(f"unknown loss {loss!r}; known: {', '.join(sorted(_LOSSES))}, "
                         "or pass a callable (y_pred, y_true) -> loss or an nn.Module")
    on_logits, on_probs = _LOSSES[name]
    if from_logits is None:
        from_logits = name not in _PROBABILITY_DEFAULT
    fn = on_logits if from_logits else on_probs
    if fn is None:
        fn = on_probs if on_logits is None else on_logits
        from_logits = on_probs is None
    return Loss(fn, name, from_logits)
