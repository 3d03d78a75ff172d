import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch import nn

import ember
from ember.distributed import DDP, FSDP, get_strategy
from ember.distributed.fsdp import shard_blocks
from ember.train.metrics import Accuracy


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(6, 6)

    def forward(self, x):
        return x + torch.relu(self.linear(x))


class Net(ember.Model):
    def __init__(self):
        super().__init__()
        self.blocks = nn.Sequential(Block(), Block(), nn.Linear(6, 6), nn.Linear(6, 6))
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        return self.head(self.blocks(x))


def fit(strategy):
    ember.seed(3)
    model = Net()
    model.compile("sgd", loss="cross_entropy", metrics=["accuracy"], lr=0.1, clip_grad_norm=1.0)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 6)).astype("float32"), rng.integers(0, 2, 20)
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0, strategy=strategy)
    return model, history.history


@pytest.fixture
def no_process_group():
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


def test_unknown_strategy_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown strategy 'tpu'; known: 'single', 'ddp', 'fsdp'"):
        get_strategy("tpu")
    with pytest.raises(TypeError, match="strategy must be"):
        get_strategy(42)


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_without_a_launcher_a_strategy_trains_as_one_process(strategy, no_process_group):
    reference, reference_history = fit(None)
    model, history = fit(strategy)
    assert history["loss"] == pytest.approx(reference_history["loss"], abs=1e-6)
    full = ember.distributed.gather_state_dict(model)
    for name, tensor in reference.state_dict().items():
        torch.testing.assert_close(full[name], tensor, atol=1e-6, rtol=0)


def test_fsdp_shards_each_repeated_block_innermost_first():
    model = Net()
    assert shard_blocks(model) == [model.blocks[0], model.blocks[1]]  # the plain Linears are leaves
    assert shard_blocks(model, wrap=nn.Linear)[0] in {m.linear for m in model.blocks[:2]}
    assert shard_blocks(model, wrap=lambda m: m is model.head) == [model.head]
    with pytest.raises(TypeError, match="wrap must be"):
        shard_blocks(model, wrap="blocks")
    with pytest.raises(ValueError, match="mixed_precision must be"):
        FSDP(mixed_precision="int8")._mixed_precision_policy()


def test_reduced_metric_is_a_copy_so_the_running_state_stays_local(no_process_group):
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    strategy = DDP()
    strategy.world_size = 2  # a group of one sums like a group of two whose other rank saw nothing
    metric = Accuracy()
    metric.update(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.tensor([1, 1]))
    reduced = strategy.reduce_metric(metric)
    assert reduced is not metric and float(reduced.result()) == 0.5
    metric.update(torch.tensor([[0.0, 1.0]]), torch.tensor([1]))
    assert float(strategy.reduce_metric(metric).result()) == pytest.approx(2 / 3)
    assert strategy.reduce_sum(torch.tensor(3.0, dtype=torch.float64), 4) == (3.0, 4)


def test_an_fsdp_model_saves_its_gathered_weights_and_loads_as_its_own_class(tmp_path, no_process_group):
    model, _ = fit("fsdp")
    model.save(tmp_path / "model.ember")
    loaded = ember.load(tmp_path / "model.ember")
    assert type(loaded) is Net  # not fully_shard's FSDPNet subclass
    x = np.random.default_rng(1).normal(size=(5, 6)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x), model.predict(x), atol=1e-6)


class ConvNet(ember.Model):
    def __init__(self):
        super().__init__()
        self.conv, self.head = nn.Conv2d(1, 4, 3, padding=1), nn.Linear(4 * 6 * 6, 2)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        return self.head(x.view(x.size(0), -1))  # the seed's flatten, rewritten under channels_last


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_a_convolutional_model_trains_under_each_strategy_fsdp_with_contiguous_weights(strategy, no_process_group):
    ember.seed(0)
    model = ConvNet()
    model.compile("sgd", loss="cross_entropy", lr=0.1, precision="fp32")
    x, y = np.random.default_rng(0).normal(size=(16, 1, 6, 6)).astype("float32"), np.arange(16) % 2
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)  # the first fit: channels_last
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, strategy=strategy)  # FSDP2 shards contiguous ones only
    assert model.trainer.state.channels_last == (strategy == "ddp")
