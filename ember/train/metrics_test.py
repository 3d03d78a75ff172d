import pytest
import torch

from ember.train.metrics import Accuracy, TorchMetric


def _batches():
    torch.manual_seed(0)
    return [(torch.randn(8, 3), torch.randint(0, 3, (8,))) for _ in range(4)]


@pytest.mark.parametrize("make", [Accuracy, lambda: TorchMetric(
    pytest.importorskip("torchmetrics").Accuracy(task="multiclass", num_classes=3))], ids=["ember", "torchmetrics"])
def test_state_dict_carries_the_running_state_to_a_fresh_metric(make):
    whole, first, second = make(), make(), make()
    batches = _batches()
    for pred, true in batches:
        whole.update(pred, true)
    for pred, true in batches[:2]:
        first.update(pred, true)
    second.load_state_dict(first.state_dict())
    for pred, true in batches[2:]:
        second.update(pred, true)
    assert float(second.result()) == float(whole.result())


def test_torchmetrics_state_from_a_backup_written_before_state_dict():
    torchmetrics = pytest.importorskip("torchmetrics")
    old, new = (TorchMetric(torchmetrics.Accuracy(task="multiclass", num_classes=3)) for _ in range(2))
    pred, true = _batches()[0]
    old.update(pred, true)
    new.load_state_dict({"torchmetrics": old.state_dict(), "update_count": 1})  # the earlier backup layout
    assert float(new.result()) == float(old.result())
