"""Shared by the tests beside the modules (ember/) and the end-to-end ones (tests/)."""
import os

import pytest

os.environ.setdefault("EMBER_QUICK", "1")

try:  # the fuzz tests' examples are drawn afresh each run: no .hypothesis/ database in the checkout
    from hypothesis import settings

    settings.register_profile("ember", database=None)
    settings.load_profile("ember")
except ImportError:
    pass


@pytest.fixture(autouse=True)
def _channels_first_default():
    """Tests that switch the global image data format must not leak it into others."""
    import ember

    yield
    ember.config.set_image_data_format("channels_first")


@pytest.fixture(scope="session")
def digits():
    from ember.datasets import load_digits

    return load_digits()
