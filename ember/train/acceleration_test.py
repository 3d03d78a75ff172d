"""Each acceleration trains to the same result as plain fp32 (issue: fit faster than a hand loop)."""
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ember
from ember.train.hardware import native_bf16
from ember.train.precision import resolve_precision


def small_convnet():
    return ember.wrap(nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                    nn.Flatten(), nn.Dropout(0.1), nn.Linear(8 * 14 * 14, 10)))


def train(digits, data="arrays", **options):
    (x, y), (x_val, y_val) = digits
    ember.seed(0)
    model = small_convnet()
    model.compile("adamw", "cross_entropy", ["accuracy"], lr=3e-3, clip_grad_norm=1.0, **options)
    n = 1024
    if data == "arrays":
        model.fit(x[:n], y[:n], epochs=3, batch_size=64, verbose=0)
    else:
        loader = DataLoader(TensorDataset(torch.from_numpy(x[:n]), torch.from_numpy(y[:n])), batch_size=64,
                            shuffle=True, generator=torch.Generator().manual_seed(0))
        model.fit(loader, epochs=3, verbose=0)
    return model, model.evaluate(x_val, y_val)["accuracy"]


@pytest.fixture(scope="module")
def reference(digits):
    return train(digits, precision="fp32", fused=False, channels_last=False, fast_dropout=False)


@pytest.mark.parametrize("options", [
    {"channels_last": True, "precision": "fp32", "fused": False, "fast_dropout": False},
    {"fused": True, "precision": "fp32", "channels_last": False, "fast_dropout": False},
    {"fast_dropout": True, "precision": "fp32", "channels_last": False, "fused": False},
    {"precision": "bf16"},
    {"jit_compile": True, "precision": "fp32"},
    {"data": "loader", "precision": "fp32"},
], ids=["channels_last", "fused", "fast_dropout", "bf16", "jit_compile", "dataloader"])
def test_each_option_trains_like_fp32(digits, reference, options):
    _, reference_accuracy = reference
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bf16 on a CPU without native support warns that it is slow
        model, accuracy = train(digits, **options)
    assert reference_accuracy > 0.9
    assert abs(accuracy - reference_accuracy) <= 0.03, (accuracy, reference_accuracy)


def test_channels_last_is_used_for_convolutions_and_checked(digits):
    model, _ = train(digits, precision="fp32")
    assert model.trainer.state.channels_last
    assert model.module[0].weight.is_contiguous(memory_format=torch.channels_last)


class SeedConvNet(ember.Model):
    """The seed's spelling of flatten: a .view(), which channels_last activations refuse in eager torch."""

    def __init__(self, view=True):
        super().__init__()
        self.conv, self.pool, self.fc = nn.Conv2d(1, 8, 3, padding=1), nn.MaxPool2d(2), nn.Linear(8 * 14 * 14, 10)
        self.view = view

    def forward(self, x):
        x = self.pool(torch.relu(self.conv(x)))
        return self.fc(x.view(x.size(0), -1) if self.view else x.flatten(1))


def test_the_seeds_view_trains_channels_last_to_the_weights_of_flatten(digits):
    (x, y), (x_val, y_val) = digits
    trained = {}
    for view in (True, False):
        ember.seed(0)
        model = SeedConvNet(view)
        model.compile("adamw", "cross_entropy", lr=3e-3, precision="fp32", fast_dropout=False)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "training in the default memory layout"
            model.fit(x[:256], y[:256], epochs=2, batch_size=32, validation_data=(x_val[:64], y_val[:64]), verbose=0)
        assert model.trainer.state.channels_last
        trained[view] = model
    for mine, theirs in zip(trained[True].parameters(), trained[False].parameters()):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)
    seed = trained[True]
    assert seed.conv.weight.is_contiguous()  # NCHW between ember's calls: the class's own code runs it
    with torch.no_grad():
        expected = seed(torch.from_numpy(x_val[:8]))
    np.testing.assert_allclose(seed.predict(x_val[:8]), expected.numpy(), rtol=1e-5, atol=1e-6)
    assert seed.conv.weight.is_contiguous()


def test_training_forward_runs_in_the_cpu_fast_paths(digits):
    from ember.train.fast_paths import CpuTrainingFastPaths

    (x, y), _ = digits
    seen = []
    for options in ({}, {"jit_compile": True}, {"fast_dropout": False, "channels_last": False}):
        model = small_convnet()
        model.compile("sgd", "cross_entropy", lr=0.01, **options)
        modes = []
        current_mode = torch.overrides._get_current_function_mode
        model.module[0].register_forward_hook(lambda m, i, o: modes.append(current_mode()))
        model.fit(x[:64], y[:64], batch_size=64, verbose=0)
        mode = modes[-1]  # the training step's forward
        seen.append(isinstance(mode, CpuTrainingFastPaths) and (mode.dropout, mode.channels_last))
    assert seen == [(True, True), False, False]


def test_auto_precision_never_picks_bf16_without_native_support(monkeypatch):
    cpu = torch.device("cpu")
    expected = "bf16" if native_bf16(cpu) else "fp32"
    assert resolve_precision("auto", cpu) == expected
    monkeypatch.setattr("ember.train.precision.native_bf16", lambda device: False)
    assert resolve_precision("auto", cpu) == "fp32"
    monkeypatch.setattr("ember.train.precision.native_bf16", lambda device: True)
    assert resolve_precision("auto", cpu) == "bf16"
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp8", cpu)


def test_cpu_flags_decide_native_bf16(monkeypatch):
    from ember.train import hardware

    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    assert hardware.native_bf16(torch.device("cpu"))
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    assert not hardware.native_bf16(torch.device("cpu"))


@pytest.mark.parametrize("capability, bf16_supported, expected", [
    ((9, 0), True, "bf16"), ((8, 0), True, "bf16"), ((7, 5), False, "fp16"), ((7, 0), True, "fp16")])
def test_auto_precision_on_a_gpu_follows_its_capability(monkeypatch, capability, bf16_supported, expected):
    # CI has no GPU: the CUDA queries are what decide, so they are what is replaced.
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16_supported)
    assert resolve_precision("auto", torch.device("cuda")) == expected
    assert resolve_precision("fp32", torch.device("cuda")) == "fp32"


def test_jit_compile_falls_back_to_eager_with_a_warning(monkeypatch):
    from ember.train import jit

    def broken_compile(module, **kwargs):
        def call(*args, **kw):
            raise torch._dynamo.exc.InternalTorchDynamoError("no compiler")
        return call

    monkeypatch.setattr(jit.torch, "compile", broken_compile)
    forward = jit.CompiledForward(nn.Linear(2, 2))
    with pytest.warns(RuntimeWarning, match="torch.compile failed"):
        out = forward(torch.ones(3, 2))
    assert out.shape == (3, 2) and forward.fell_back


def test_short_last_batch_does_not_recompile(digits):
    (x, y), _ = digits
    torch._dynamo.reset()
    ember.seed(0)
    model = small_convnet()
    model.compile("sgd", "cross_entropy", lr=0.01, jit_compile=True, precision="fp32")
    from torch._dynamo.utils import counters

    counters.clear()
    # Batches of 32, 32, 32, 20. (torch's CPU convolution guards on batch >= 16, so a tail below 16
    # compiles once more; that guard is torch's, not a specialisation on the exact size.)
    model.fit(x[:116], y[:116], batch_size=32, epochs=1, verbose=0)
    assert counters["stats"]["unique_graphs"] == 1


def test_evaluate_and_predict_run_in_inference_mode(digits):
    (x, y), _ = digits
    model = small_convnet()
    model.compile("adam", "cross_entropy")
    seen = []
    model.module[0].register_forward_hook(lambda m, i, o: seen.append(torch.is_inference_mode_enabled()))
    model.evaluate(x[:8], y[:8])
    model.predict(x[:8])
    assert seen and all(seen[-2:])
    np.testing.assert_array_equal(model.predict(x[:4]).shape, (4, 10))


@pytest.mark.parametrize("max_norm", [0.05, 1e6])
def test_cpu_gradient_clipping_matches_torch_bit_for_bit(max_norm):
    from ember.distributed.strategy import SingleProcess

    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(5, 7), nn.Linear(7, 3))
    b = nn.Sequential(nn.Linear(5, 7), nn.Linear(7, 3))
    b.load_state_dict(a.state_dict())
    x = torch.randn(16, 5)
    for model in (a, b):
        model(x).square().sum().backward()
    expected = torch.nn.utils.clip_grad_norm_(a.parameters(), max_norm, foreach=True)
    norm = SingleProcess().clip_grad_norm(b, max_norm)
    assert torch.equal(norm, expected)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p.grad, q.grad)
