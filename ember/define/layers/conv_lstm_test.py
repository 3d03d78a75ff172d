import numpy as np
import pytest
import torch

import ember
from ember import layers as L
from ember.errors import ShapeError
from testing.layers import rebuilt

X = torch.from_numpy(np.random.default_rng(0).normal(size=(2, 4, 6, 5, 3)).astype("float32"))  # (batch, steps, H, W, C)


def _pair(**kwargs):
    """The same ConvLSTM2D in both data formats, holding the same weights."""
    last = L.ConvLSTM2D(4, 3, **kwargs, data_format="channels_last")
    first = L.ConvLSTM2D(4, 3, **kwargs, data_format="channels_first")
    last(X), first(X.movedim(-1, 2))
    first.load_state_dict(last.state_dict())
    return last.eval(), first.eval()


@pytest.mark.parametrize("kwargs", [dict(padding="same", return_sequences=True), dict(strides=2, return_state=True),
                                    dict(padding="same", go_backwards=True)])
def test_both_data_formats_and_a_rebuilt_layer_give_the_same_numbers(kwargs):
    last, first = _pair(**kwargs)
    with torch.no_grad():
        got, other, again = last(X), first(X.movedim(-1, 2)), rebuilt(last)(X)
    got, other, again = ([t] if torch.is_tensor(t) else t for t in (got, other, again))
    for a, b, c in zip(got, other, again):
        channel = 2 if a.dim() == 5 else 1
        assert torch.allclose(a, b.movedim(channel, -1), atol=1e-6) and torch.equal(a, c)
    assert tuple(got[0].shape[1:]) == last.output_shape if not last.return_state else last.output_shape[0]


def test_padded_steps_change_nothing_and_the_layer_trains():
    layer = L.ConvLSTM2D(4, 3, padding="same", data_format="channels_last")
    padded = torch.cat([X, torch.zeros_like(X[:, :2])], dim=1)
    mask = torch.arange(6)[None].expand(2, 6) < 4
    with torch.no_grad():
        assert torch.allclose(layer(padded, mask=mask), layer(X), atol=1e-6)
    layer.train()
    layer(X).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.parameters())


def test_in_a_model_it_saves_loads_and_refuses_other_shapes(tmp_path):
    model = ember.Sequential([L.Input((4, 6, 5, 3)), L.ConvLSTM2D(2, 3, data_format="channels_last"), L.Flatten(),
                              L.Dense(3)])
    model.save(tmp_path / "model.ember")
    with torch.no_grad():
        assert torch.equal(ember.load(tmp_path / "model.ember").eval()(X), model.eval()(X))
    with pytest.raises(ShapeError, match=r"\(batch, steps, H, W, 3\).*\(2, 4, 6, 5, 2\)"):
        model(X[..., :2])
