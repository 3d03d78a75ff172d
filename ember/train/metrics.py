"""Metrics that accumulate on the device: `update` launches kernels, only `result` syncs.

Reading a metric every step would stall the GPU (and costs ~5% on the CPU); ember
reads them when the progress bar refreshes and at the end of an epoch.

A metric's running state is read and written through `state_dict()` / `load_state_dict()` only:
a distributed strategy sums it across processes with them, a backup saves and restores it.
"""
import re
import warnings

import torch


class Metric:
    name = "metric"
    all_reduce = True  # the strategy sums state_dict()'s tensors across processes before result()

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

    def to(self, device) -> "Metric":
        """Keep the state on `device` (ember's metrics start empty and follow the outputs)."""
        return self

    def state_dict(self) -> dict:
        """The running state: tensors (summable across processes) or None before the first update."""
        return {"total": self.total, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.total, self.count = state["total"], state["count"]


class Mean(Metric):
    """The mean of one value per batch, weighted by the batch's size: an output's loss (Keras logs
    `<output>_loss` the same way)."""

    def __init__(self, name):
        self.name = name
        super().__init__()

    def update(self, value, batch_size):
        self._add(value.detach() * batch_size, batch_size)


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

    all_reduce = False  # torchmetrics syncs its own state across processes

    def __init__(self, metric):
        self.metric = metric
        self.name = re.sub(r"(?<!^)(?=[A-Z])", "_", type(metric).__name__).lower()
        super().__init__()

    def reset(self):
        self.metric.reset()
        self.restored = False

    def update(self, y_pred, y_true):
        self.metric.update(y_pred, y_true)

    def to(self, device) -> "TorchMetric":
        self.metric.to(device)
        return self

    def result(self):
        with warnings.catch_warnings():
            if self.restored:  # its update count starts again at 0; the restored state is what counts
                warnings.filterwarnings("ignore", message=".*was called before the ``update`` method.*")
            return self.metric.compute()

    def state_dict(self) -> dict:
        return dict(self.metric.metric_state)

    def load_state_dict(self, state: dict) -> None:
        state = state.get("torchmetrics", state)  # backups before #17 nested the states under this key
        device = self.metric.device
        self.metric.load_state_dict({name: [v.to(device) for v in value] if isinstance(value, list)
                                     else value.to(device) for name, value in state.items()}, strict=False)
        self.restored = True


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
