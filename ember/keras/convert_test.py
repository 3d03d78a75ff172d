"""Bad input to from_keras, on small files written by hand (no Keras needed)."""
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import ember
from ember.saving import ModelFileError
from ember.keras import UnsupportedKerasLayersError, from_keras
from testing.keras import (BIAS, INPUT, KERNEL, functional_dense_config, keras3_weights, peak_memory_of,
                           sequential_config, write_keras)
from testing.keras import layer as _layer


def _write_keras(path, layers, weights):
    return write_keras(path, sequential_config(layers), keras3_weights(weights))


def test_dense_weights_are_transposed(tmp_path):
    path = _write_keras(tmp_path / "m.keras", [INPUT, _layer("Dense", "dense", units=3)],
                        {"dense": ("dense", [KERNEL, BIAS])})
    model = from_keras(path)
    x = torch.ones(2, 4)
    assert torch.allclose(model(x), x @ torch.from_numpy(KERNEL) + 1)


def test_every_unsupported_layer_is_listed_and_lambda_refused(tmp_path):
    layers = [INPUT, _layer("Lambda", "scale_it", function="4wEAAAAAAAAA"), _layer("Dense", "dense", units=3),
              _layer("Bidirectional", "bidi"),
              {"module": None, "class_name": "MyBlock", "config": {"name": "block"}, "registered_name": "my>MyBlock"}]
    with pytest.raises(UnsupportedKerasLayersError) as raised:
        from_keras(_write_keras(tmp_path / "m.keras", layers, {}))
    message = str(raised.value)
    assert "3 layer(s)" in message
    assert "'scale_it' is a Lambda layer" in message and "CVE-2024-3660" in message
    assert "'bidi' (Bidirectional)" in message
    assert "'block' is a custom layer (MyBlock)" in message and "custom_layers" in message


def test_custom_layers_factory_replaces_a_layer(tmp_path):
    layers = [INPUT, _layer("Lambda", "double"), _layer("Dense", "dense", units=3)]
    path = _write_keras(tmp_path / "m.keras", layers, {"dense": ("dense", [KERNEL, BIAS])})
    seen = {}

    class Double(torch.nn.Module):
        def forward(self, x):
            return 2 * x

    def factory(config, weights):
        seen.update(config=config, weights=weights)
        return Double()

    model = from_keras(path, custom_layers={"double": factory})
    assert seen["config"]["name"] == "double" and seen["weights"] == []
    assert torch.allclose(model(torch.ones(1, 4)), 2 * torch.ones(1, 4) @ torch.from_numpy(KERNEL) + 1)


def test_custom_layer_with_parameters_in_a_functional_model(tmp_path):
    """from_keras builds its own layers on the meta device; a user's module keeps its real weights."""
    config = functional_dense_config()
    config["config"]["layers"][1].update(class_name="MyDense", module=None, registered_name="my>MyDense")
    path = write_keras(tmp_path / "m.keras", config, keras3_weights({"dense": ("dense", [KERNEL, BIAS])}))

    def factory(config, weights):
        linear = torch.nn.Linear(4, 3)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(weights[0].T.copy()))
            linear.bias.copy_(torch.from_numpy(weights[1]))
        return linear

    model = from_keras(path, custom_layers={"MyDense": factory})
    x = torch.ones(2, 4)
    assert torch.allclose(model(x), x @ torch.from_numpy(KERNEL) + 1)
    assert all(tensor.device.type == "cpu" for tensor in model.state_dict().values())


def test_mismatched_weights_name_the_layer_and_shapes(tmp_path):
    layers = [INPUT, _layer("Dense", "dense", units=3), _layer("Dense", "dense_1", units=2)]
    path = _write_keras(tmp_path / "m.keras", layers, {"dense": ("dense", [np.ones((5, 3), "float32"), BIAS]),
                                                       "dense_1": ("dense_1", [np.ones((3, 2), "float32")])})
    with pytest.raises(ModelFileError) as raised:
        from_keras(path)
    message = str(raised.value)
    assert "'dense' (Dense): file arrays [(5, 3), (3,)]" in message and "(3, 4)" in message
    assert "'dense_1' (Dense)" in message and "'bias'" in message


@pytest.mark.parametrize("cut", [0.3, 0.9])
def test_truncated_files_are_named_corrupt(tmp_path, cut):
    path = _write_keras(tmp_path / "m.keras", [INPUT, _layer("Dense", "dense", units=3)],
                        {"dense": ("dense", [KERNEL, BIAS])})
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(ModelFileError, match="corrupt or truncated"):
        from_keras(path)
    h5_path = tmp_path / "m.h5"
    with h5py.File(h5_path, "w") as h5:
        h5.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": {"layers": []}})
        h5.create_dataset("model_weights/big", data=np.zeros(4096, "float32"))
    h5_path.write_bytes(h5_path.read_bytes()[: int(h5_path.stat().st_size * cut)])
    with pytest.raises(ModelFileError, match="corrupt or truncated|not a readable HDF5"):
        from_keras(h5_path)


def test_not_a_keras_file(tmp_path):
    path = tmp_path / "m.keras"
    path.write_text("hello")
    with pytest.raises(ModelFileError, match="neither a Keras 3 .keras zip nor an HDF5"):
        from_keras(path)


@pytest.mark.parametrize("class_name, config, expected", [
    ("LeakyReLU", {"negative_slope": 0.1}, lambda x: torch.where(x > 0, x, 0.1 * x)),
    ("LeakyReLU", {"alpha": 0.2}, lambda x: torch.where(x > 0, x, 0.2 * x)),  # tf.keras 2's name
    ("LeakyReLU", {}, lambda x: torch.where(x > 0, x, 0.3 * x)),  # Keras' default slope
    ("ReLU", {"negative_slope": 0.05}, lambda x: torch.where(x > 0, x, 0.05 * x)),
    ("ELU", {"alpha": 0.5}, lambda x: torch.where(x > 0, x, 0.5 * torch.expm1(x))),
])
def test_leaky_relu_and_elu_keep_their_parameters(tmp_path, class_name, config, expected):
    model = from_keras(_write_keras(tmp_path / "m.keras", [INPUT, _layer(class_name, "act", **config)], {}))
    x = torch.linspace(-3, 3, 8).reshape(2, 4)
    torch.testing.assert_close(model(x), expected(x))
    saved = tmp_path / "m.ember"  # the slope survives save/load
    model.save(saved)
    torch.testing.assert_close(ember.load(saved)(x), expected(x))


def test_a_converted_functional_model_saved_before_functional_models_existed_still_loads():
    """tests/data/formats/keras-graph-v1.ember: a KerasGraph file (a shared Dense, two inputs) as
    ember wrote them before from_keras made ember.Model(inputs, outputs)."""
    folder = Path(__file__).parents[2] / "tests" / "data" / "formats"
    data = np.load(folder / "keras-graph-v1.inputs-and-expected.npz")
    model = ember.load(folder / "keras-graph-v1.ember")
    out = model([torch.from_numpy(data["image"]), torch.from_numpy(data["feats"])])
    assert np.abs(out.detach().numpy() - data["expected"]).max() < 1e-5
    assert isinstance(model, ember.define.Functional)


def test_normalization_statistics_given_in_the_config_are_loaded_but_never_broadcast_to_gigabytes(tmp_path):
    image = _layer("InputLayer", "input_layer", batch_shape=[None, 2, 2, 3])
    given = _layer("Normalization", "normalization", axis=[-1], mean=[1.0, 2.0, 3.0], variance=[4.0, 4.0, 4.0])
    model = from_keras(_write_keras(tmp_path / "m.keras", [image, given], {}))
    x = torch.arange(12.0).reshape(1, 2, 2, 3)
    assert torch.allclose(model(x), (x - torch.tensor([1.0, 2.0, 3.0])) / 2)
    huge = dict(image, config={**image["config"], "batch_shape": [None, 4096, 4096, 3]})
    everywhere = _layer("Normalization", "normalization", axis=[1, 2, 3], mean=0.0, variance=1.0)
    path = _write_keras(tmp_path / "huge.keras", [huge, everywhere], {})
    raised, peak = peak_memory_of(lambda: from_keras(path))
    assert isinstance(raised, ModelFileError) and "broadcast to 50331648 values, more than 1048576" in str(raised)
    assert peak < 100 * 2**20  # the statistics would take 400 MB


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_rescaling_by_a_serialized_numpy_array_scales_each_channel(tmp_path, data_format):
    image = _layer("InputLayer", "input_layer", batch_shape=[None, 2, 2, 3])
    scale = {"class_name": "__numpy__", "config": {"value": [1.0, 10.0, 100.0], "dtype": "float32"}}
    model = from_keras(_write_keras(tmp_path / "m.keras", [image, _layer("Rescaling", "rescaling", scale=scale,
                                                                            offset=1.0)], {}), data_format=data_format)
    x = torch.ones(1, 2, 2, 3)
    expected = torch.tensor([2.0, 11.0, 101.0]).expand(1, 2, 2, 3)
    if data_format == "channels_first":
        x, expected = x.permute(0, 3, 1, 2), expected.permute(0, 3, 1, 2)
    assert torch.equal(model(x), expected)
    bad = _layer("Rescaling", "rescaling", scale="1/255")
    with pytest.raises(UnsupportedKerasLayersError, match="'rescaling' \\(Rescaling\\): a value '1/255' that is not"):
        from_keras(_write_keras(tmp_path / "bad.keras", [image, bad], {}))
