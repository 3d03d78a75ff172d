import contextlib

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ember.train.fast_paths import CpuTrainingFastPaths, dropout

NHWC = torch.channels_last


@pytest.mark.parametrize("p", [0.1, 0.25, 0.5, 0.9])
def test_dropout_zeroes_a_fraction_p_and_keeps_the_expected_value(p):
    torch.manual_seed(0)
    x = torch.ones(1_000_000)
    out = dropout(x, p)
    kept = out != 0
    sigma = (p * (1 - p) / x.numel()) ** 0.5
    assert abs((~kept).float().mean().item() - p) < 5 * sigma
    scale = out[kept].unique()
    assert scale.numel() == 1 and abs(scale.item() * (1 - p) - 1) < 1e-4  # p rounds to 1/65536
    assert abs(out.mean().item() - 1) < 6 * sigma / (1 - p)


def test_dropout_masks_follow_torch_manual_seed():
    x = torch.randn(64, 128)
    torch.manual_seed(3)
    a = dropout(x, 0.3)
    torch.manual_seed(3)
    b = dropout(x, 0.3)
    c = dropout(x, 0.3)
    assert torch.equal(a, b) and not torch.equal(b, c)


def test_dropout_gradient_is_the_mask_and_the_layout_is_kept():
    x = torch.randn(8, 16, 5, 5).contiguous(memory_format=NHWC).requires_grad_()
    out = dropout(x, 0.25)
    assert out.is_contiguous(memory_format=NHWC)
    out.sum().backward()
    torch.testing.assert_close(x.grad, torch.where(out != 0, 1 / 0.75, 0.0))
    odd = torch.randn(3, 7)[:, ::2]  # not dense: the mask is built in the default layout
    assert dropout(odd, 0.5).shape == odd.shape


def test_dropout_leaves_everything_else_to_torch():
    x = torch.randn(4, 10)
    assert torch.equal(dropout(x, 0.5, training=False), x)
    assert torch.equal(dropout(x, 0.0), x)
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    y = x.clone()
    out = dropout(y, 0.5, inplace=True)
    assert out is y and ((y == 0) | torch.isclose(y, 2 * x)).all()


def test_the_mode_routes_nn_dropout_and_only_when_asked(monkeypatch):
    from ember.train import fast_paths

    calls = []
    monkeypatch.setattr(fast_paths, "dropout", lambda *args, **kwargs: calls.append(args) or dropout(*args, **kwargs))
    layer, x = nn.Dropout(0.5), torch.ones(10_000)
    with CpuTrainingFastPaths(dropout=False, channels_last=True):
        layer(x)
    with CpuTrainingFastPaths(dropout=True, channels_last=False):
        layer(x)
    assert len(calls) == 1


@pytest.mark.parametrize("flatten", [
    lambda t: t.flatten(1), lambda t: torch.flatten(t, 1), lambda t: t.reshape(t.size(0), -1),
    lambda t: t.reshape((t.size(0), -1)), lambda t: torch.reshape(t, (-1, 16 * 5 * 5)), nn.Flatten(),
], ids=["Tensor.flatten", "torch.flatten", "reshape", "reshape_tuple", "torch.reshape", "nn.Flatten"])
def test_gradient_of_a_flattened_nhwc_activation_comes_back_nhwc(flatten):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 16, 3, padding=1).to(memory_format=NHWC)
    head = nn.Linear(16 * 5 * 5, 2)
    x = torch.randn(4, 3, 5, 5)
    grads = []

    def run(mode):
        with mode:
            activation = torch.relu(conv(x))
            activation.register_hook(grads.append)
            out = head(flatten(activation))
        out.square().sum().backward()
        return out

    eager = run(contextlib.nullcontext())
    fast = run(CpuTrainingFastPaths(dropout=False, channels_last=True))
    torch.testing.assert_close(fast, eager)
    torch.testing.assert_close(grads[1], grads[0])
    assert not grads[0].is_contiguous(memory_format=NHWC)  # what torch alone hands back
    assert grads[1].is_contiguous(memory_format=NHWC)


def test_flattens_that_torch_does_not_copy_are_left_alone():
    x = torch.randn(4, 16, 5, 5).contiguous(memory_format=NHWC).requires_grad_()
    with CpuTrainingFastPaths(dropout=False, channels_last=True):
        partial = x.flatten(2)  # H and W merge in NHWC too: a view in eager torch
        assert partial._base is x
        with pytest.raises(RuntimeError, match="view size is not compatible"):
            x.view(4, 80, 5)  # merges C and H: fails in eager torch, so it fails here too


@pytest.mark.parametrize("requires_grad", [True, False])
def test_the_seeds_view_of_an_nhwc_activation_views_an_nchw_copy(requires_grad):
    x = torch.randn(4, 16, 5, 5)
    nhwc = x.contiguous(memory_format=NHWC).requires_grad_(requires_grad)
    with pytest.raises(RuntimeError, match="view size is not compatible"):
        nhwc.view(nhwc.size(0), -1)  # eager torch
    with CpuTrainingFastPaths(dropout=False, channels_last=True):
        flat = nhwc.view(nhwc.size(0), -1)
        assert torch.equal(flat, x.view(4, -1)) and torch.equal(nhwc.view(4, 400), flat)
    if requires_grad:
        flat.square().sum().backward()
        assert nhwc.grad.is_contiguous(memory_format=NHWC) and torch.allclose(nhwc.grad, 2 * x)

