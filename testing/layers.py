"""Layer tests against Keras 3 (torch backend, no TensorFlow): the same input through a one-layer
Keras model and through the ember layer, in both data formats, and through a layer rebuilt from
its config (as Sequential.from_config and Functional.from_config rebuild it)."""
import json
import os

import numpy as np
import pytest
import torch


def keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    return pytest.importorskip("keras")


def keras_predict(keras_layer, x):
    """`keras_layer` applied to the numpy batch `x` by a one-layer Keras model's predict."""
    k = keras()
    inputs = k.Input(x.shape[1:])
    return np.asarray(k.Model(inputs, keras_layer(inputs)).predict(x, verbose=0))


def ember_predict(layer, x):
    layer.eval()
    with torch.no_grad():
        return layer(torch.from_numpy(x)).numpy()


def rebuilt(layer):
    """The layer rebuilt from its JSON config, with its state copied over."""
    config = json.loads(json.dumps(layer.get_config()))
    copy = type(layer)(**config)
    if layer.state_dict():
        copy.load_state_dict(layer.state_dict())
    return copy


def assert_matches_keras(keras_layer, ember_layer_for, x, rtol=1e-4, channels_axis=-1):
    """`ember_layer_for(data_format)` gives Keras' numbers on NHWC `x` (channels_last), on `x` with
    its channels moved to axis 1 (channels_first), and after a config round trip."""
    expected = keras_predict(keras_layer, x)
    scale = max(float(np.abs(expected).max()), 1e-6)
    layer = ember_layer_for("channels_last")
    got = ember_predict(layer, x)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= rtol * scale
    assert np.abs(ember_predict(rebuilt(layer), x) - expected).max() <= rtol * scale
    if channels_axis is not None and x.ndim > 2:
        first = ember_predict(ember_layer_for("channels_first"), np.ascontiguousarray(np.moveaxis(x, -1, 1)))
        assert np.abs(np.moveaxis(first, 1, -1) - expected).max() <= rtol * scale
    return expected


def padded_ids(rng, rows, steps, vocabulary):
    """(token ids with trailing padding 0, each row's real length)."""
    lengths = rng.integers(1, steps + 1, rows)
    return np.where(np.arange(steps)[None] < lengths[:, None], rng.integers(1, vocabulary, (rows, steps)), 0), lengths


def assert_saves_and_exports(model, inputs, tmp_path):
    """`model` (in eval mode) gives the same outputs on `inputs` after ember.save / ember.load, and within
    1e-5 from its ONNX export."""
    import ember

    onnxruntime = pytest.importorskip("onnxruntime")
    with torch.no_grad():
        eager = model(torch.from_numpy(inputs)).numpy()
        model.save(tmp_path / "model.ember")
        assert np.abs(ember.load(tmp_path / "model.ember")(torch.from_numpy(inputs)).numpy() - eager).max() == 0
    model.export(tmp_path / "export", format="onnx", example=torch.from_numpy(inputs[:4]))
    session = onnxruntime.InferenceSession(str(tmp_path / "export" / "model.onnx"))
    got = session.run(None, {session.get_inputs()[0].name: inputs})[0]
    assert np.abs(got - eager).max() <= 1e-5
