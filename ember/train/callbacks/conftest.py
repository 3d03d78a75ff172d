import numpy as np
import pytest

import ember
from ember import layers


@pytest.fixture
def toy():
    """A tiny classification problem and a factory for a compiled model."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)

    def build(lr=0.05):
        ember.seed(0)
        model = ember.Sequential([layers.Dense(8, activation="relu", input_shape=(4,)), layers.Dense(2)])
        model.compile("adam", "cross_entropy", ["accuracy"], lr=lr)
        return model

    return x, y, build
