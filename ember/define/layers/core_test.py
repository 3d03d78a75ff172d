import pytest
import torch

import ember
from ember import layers as L
from ember.errors import ShapeError


def test_dropout_noise_shape_drops_whole_slices_while_training_only():
    torch.manual_seed(0)
    dropout = L.Dropout(0.5, noise_shape=(None, 1, 1, 1))
    x = torch.ones(64, 3, 4, 2)
    y = dropout(x)
    per_sample = y.flatten(1)
    assert ((per_sample == 0).all(1) | (per_sample == 2.0).all(1)).all()  # each sample kept (x 1/(1-rate)) or not
    assert 10 < int((per_sample[:, 0] == 0).sum()) < 54
    dropout.eval()
    assert torch.equal(dropout(x), x)
    assert L.Dropout(0.5, noise_shape=[None, 1, 1, 1]).get_config()["noise_shape"] == [None, 1, 1, 1]
    with pytest.raises(ShapeError, match=r"4 axes, as noise_shape=\(None, 1, 1, 1\)"):
        dropout.train()(torch.ones(2, 3))


def test_layer_scale_matches_convnext():
    import numpy as np

    from testing.layers import assert_matches_keras, keras

    keras()
    from keras.src.applications.convnext import LayerScale

    x = np.random.default_rng(0).normal(size=(2, 3, 4, 5)).astype("float32")
    reference = LayerScale(0.5, 5)
    reference.build((None, 3, 4, 5))
    reference.set_weights([np.linspace(-1, 1, 5, dtype="float32")])

    def ours(_):
        layer = L.LayerScale(0.5, 5)
        layer.gamma.data = torch.linspace(-1, 1, 5)
        return layer

    assert_matches_keras(reference, ours, x, channels_axis=None)
    assert torch.equal(L.LayerScale(1e-6, 3).gamma, torch.full((3,), 1e-6))


def test_a_layer_first_called_under_inference_mode_still_trains():
    """Export and serving run a model's first call under inference_mode; the weights that call builds
    must stay ordinary tensors, or any later training step (or graph capture) fails."""
    model = ember.Sequential([L.Dense(4), L.LSTM(3)])
    with torch.inference_mode():
        model(torch.randn(2, 5, 6))
    assert not any(p.is_inference() for p in model.parameters())
    model(torch.randn(2, 5, 6)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
