"""Losses by name, with Keras semantics for Keras names.

`sparse_categorical_crossentropy`, `categorical_crossentropy` and
`binary_crossentropy` take probabilities unless `from_logits=True`, as in Keras;
`cross_entropy` and `bce_with_logits` are PyTorch's (logits).
"""
import torch
import torch.nn.functional as F
from torch import nn

_EPSILON = 1e-7  # Keras clips probabilities to [eps, 1 - eps] before the log


def _sparse_categorical_probs(y_pred, y_true):
    log_p = torch.log(y_pred.float().clamp(_EPSILON, 1.0 - _EPSILON))
    return F.nll_loss(log_p.flatten(0, -2), y_true.long().flatten())


def _categorical_probs(y_pred, y_true):
    log_p = torch.log(y_pred.float().clamp(_EPSILON, 1.0 - _EPSILON))
    return -(y_true * log_p).sum(-1).mean()


def _categorical_logits(y_pred, y_true):
    return -(y_true * F.log_softmax(y_pred.float(), -1)).sum(-1).mean()


def _cross_entropy(y_pred, y_true):
    if y_pred.dim() > 2 and y_true.dim() == y_pred.dim() - 1:
        return F.cross_entropy(y_pred.flatten(0, -2), y_true.long().flatten())
    return F.cross_entropy(y_pred, y_true.long() if not y_true.is_floating_point() else y_true)


def _binary_probs(y_pred, y_true):
    return F.binary_cross_entropy(y_pred.float().clamp(_EPSILON, 1.0 - _EPSILON), _like(y_true, y_pred))


def _binary_logits(y_pred, y_true):
    return F.binary_cross_entropy_with_logits(y_pred.float(), _like(y_true, y_pred))


def _like(y_true, y_pred):
    """Binary targets of shape (N,) against predictions of shape (N, 1), as Keras allows."""
    y_true = y_true.float()
    return y_true.reshape(y_pred.shape) if y_true.numel() == y_pred.numel() else y_true


def _mse(y_pred, y_true):
    return F.mse_loss(y_pred.float(), _like(y_true, y_pred))


def _mae(y_pred, y_true):
    return F.l1_loss(y_pred.float(), _like(y_true, y_pred))


def _huber(y_pred, y_true):
    return F.huber_loss(y_pred.float(), _like(y_true, y_pred))


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


def get_loss(loss, from_logits=None):
    """Return `(fn(y_pred, y_true) -> scalar, name, from_logits)`."""
    if loss is None:
        return None, None, True
    if isinstance(loss, nn.Module):
        return (lambda y_pred, y_true: loss(y_pred, y_true)), type(loss).__name__, True
    if callable(loss):
        return loss, getattr(loss, "__name__", type(loss).__name__), True
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
    return fn, name, from_logits
