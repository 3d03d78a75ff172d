"""Metrics that accumulate on the device: `update` launches kernels, only `result` syncs.

Reading a metric every step would stall the GPU (and costs ~5% on the CPU); ember
reads them when the progress bar refreshes and at the end of an epoch.
"""
import re

import torch


class Metric:
    name = "metric"

    def __init__(self):
        self.reset()

    def reset(self):
        self.total = None
        self.count = None

    def _add(self, total, count):
        total = total.detach().double()
        count = torch.as_tensor(count, device=total.device, dtype=torch.float64)
        self.total = total if self.total is None else self.total + total
        self.count = count if self.count is None else self.count + count

    def result(self) -> torch.Tensor:
        if self.total is None:
            return torch.tensor(float("nan"))
        return self.total / self.count

    def state(self):
        """Tensors to all-reduce (sum) across processes before `result()`."""
        return [t for t in (self.total, self.count) if t is not None]


class Accuracy(Metric):
    """Keras' `accuracy`: sparse labels against class scores, one-hot against scores, or
    binary (threshold 0.5 on probabilities, 0 on logits)."""

    name = "accuracy"

    def __init__(self, from_logits=True):
        self.threshold = 0.0 if from_logits else 0.5
        super().__init__()

    def update(self, y_pred, y_true):
        if y_pred.dim() == y_true.dim() + 1 and y_pred.shape[-1] > 1:
            correct = y_pred.argmax(-1) == y_true
        elif y_pred.shape == y_true.shape and y_pred.dim() > 1 and y_pred.shape[-1] > 1:
            correct = y_pred.argmax(-1) == y_true.argmax(-1)
        else:
            correct = (y_pred.reshape(y_true.shape) > self.threshold) == (y_true > 0.5)
        self._add(correct.sum(), correct.numel())


class TopKAccuracy(Metric):
    def __init__(self, k=5):
        self.k = k
        self.name = f"top_{k}_accuracy"
        super().__init__()

    def update(self, y_pred, y_true):
        top = y_pred.topk(min(self.k, y_pred.shape[-1]), dim=-1).indices
        correct = (top == y_true.unsqueeze(-1)).any(-1)
        self._add(correct.sum(), correct.numel())


class MeanAbsoluteError(Metric):
    name = "mae"

    def update(self, y_pred, y_true):
        err = (y_pred.float() - y_true.float().reshape(y_pred.shape)).abs()
        self._add(err.sum(), err.numel())


class MeanSquaredError(Metric):
    name = "mse"

    def update(self, y_pred, y_true):
        err = (y_pred.float() - y_true.float().reshape(y_pred.shape)).square()
        self._add(err.sum(), err.numel())


class TorchMetric(Metric):
    """Adapter for a `torchmetrics.Metric` object."""

    def __init__(self, metric):
        self.metric = metric
        self.name = re.sub(r"(?<!^)(?=[A-Z])", "_", type(metric).__name__).lower()
        super().__init__()

    def reset(self):
        self.metric.reset()

    def update(self, y_pred, y_true):
        self.metric.update(y_pred, y_true)

    def result(self):
        return self.metric.compute()

    def state(self):
        return []  # torchmetrics syncs its own state across processes


_BY_NAME = {
    "accuracy": Accuracy, "acc": Accuracy,
    "sparse_categorical_accuracy": Accuracy, "categorical_accuracy": Accuracy, "binary_accuracy": Accuracy,
    "top_k_accuracy": TopKAccuracy, "sparse_top_k_categorical_accuracy": TopKAccuracy,
    "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError,
    "mse": MeanSquaredError, "mean_squared_error": MeanSquaredError,
}


def get_metric(metric, from_logits=True) -> Metric:
    if isinstance(metric, Metric):
        return metric
    if hasattr(metric, "compute") and hasattr(metric, "update"):
        return TorchMetric(metric)
    name = str(metric).lower()
    if name not in _BY_NAME:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(sorted(_BY_NAME))}, "
                         "or pass a torchmetrics.Metric")
    cls = _BY_NAME[name]
    if cls is Accuracy:
        return Accuracy(from_logits=from_logits)
    return cls()
