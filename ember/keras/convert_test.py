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
from testing.keras import (BIAS, INPUT, KERNEL, functional_dense_config, keras3_weights, keras_tensor,
                           peak_memory_of,
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
              _layer("StringLookup", "spread"),
              {"module": None, "class_name": "MyBlock", "config": {"name": "block"}, "registered_name": "my>MyBlock"}]
    with pytest.raises(UnsupportedKerasLayersError) as raised:
        from_keras(_write_keras(tmp_path / "m.keras", layers, {}))
    message = str(raised.value)
    assert "3 layer(s)" in message
    assert "'scale_it' is a Lambda layer" in message and "CVE-2024-3660" in message
    assert "'spread' (StringLookup)" in message
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


def test_the_supported_layers_are_listed_once_per_error(tmp_path):
    layers = [INPUT, _layer("GroupQueryAttention", "grid"), _layer("StringLookup", "spread")]
    with pytest.raises(UnsupportedKerasLayersError) as raised:
        from_keras(_write_keras(tmp_path / "m.keras", layers, {}))
    message = str(raised.value)
    assert "'grid' (GroupQueryAttention) is not a layer ember supports" in message
    assert "'spread' (StringLookup) is not a layer ember supports" in message
    assert message.count("Supported layers: ") == 1 and "Supported operations" not in message


def _operation(class_name, name, args, module="keras.src.ops.numpy", **config):
    """A Keras 3 operation node (`module` None: as legacy .h5 files write it)."""
    entry = {"class_name": class_name, "config": {"name": name, **config}, "registered_name": class_name,
             "name": name, "inbound_nodes": [{"args": args, "kwargs": {}}]}
    return dict(entry, module=module) if module else entry


def _functional_with(*operations, output):
    config = functional_dense_config()
    config["config"]["layers"] += list(operations)
    config["config"]["output_layers"] = [[output, 0, 0]]
    return config


@pytest.mark.parametrize("module", ["keras.src.ops.numpy", None])
def test_operations_become_ember_ops_saved_by_name(tmp_path, module):
    """`(dense + 3) * dense` as Keras 3 saves it: Add and Multiply operations, not merge layers,
    told apart by `module` or, in legacy .h5 configs without it, by their operands."""
    dense = keras_tensor("dense")
    config = _functional_with(
        _operation("Add", "add", [dense, 3], module),
        _operation("Multiply", "multiply", [keras_tensor("add"), dense], module),
        output="multiply")
    path = write_keras(tmp_path / "m.keras", config, keras3_weights({"dense": ("dense", [KERNEL, BIAS])}))
    model = from_keras(path)
    x = torch.randn(2, 4)
    y = x @ torch.from_numpy(KERNEL) + 1
    torch.testing.assert_close(model(x), (y + 3) * y)
    assert [node.get("op") for node in model.graph["nodes"]] == [None, "add", "multiply"]
    model.save(tmp_path / "m.ember")
    torch.testing.assert_close(ember.load(tmp_path / "m.ember")(x), (y + 3) * y)


def test_unsupported_operations_name_the_operation_and_the_layer(tmp_path):
    dense = keras_tensor("dense")
    config = _functional_with(
        _operation("Arctan2", "arctan2", [dense, dense]),
        _operation("Mean", "mean", [keras_tensor("arctan2")], axis=None, keepdims=False),
        output="mean")
    with pytest.raises(UnsupportedKerasLayersError) as raised:
        from_keras(write_keras(tmp_path / "m.keras", config, keras3_weights({"dense": ("dense", [KERNEL, BIAS])})))
    message = str(raised.value)
    assert "'arctan2' is the Keras operation Arctan2 (keras.src.ops.numpy)" in message
    assert message.count("Supported operations: ") == 1 and "Mean" in message.split("Supported operations: ")[1]
    config = _functional_with(_operation("Mean", "mean", [dense], axis=None, keepdims=False), output="mean")
    with pytest.raises(UnsupportedKerasLayersError, match=r"'mean' \(operation Mean\) computes across the batch"):
        from_keras(write_keras(tmp_path / "m.keras", config, keras3_weights({"dense": ("dense", [KERNEL, BIAS])})))


def test_an_operation_with_a_malformed_operand_names_where(tmp_path):
    config = _functional_with(_operation("Add", "add", [keras_tensor("dense"), {"class_name": "__lambda__"}]),
                              output="add")
    with pytest.raises(ModelFileError, match=r"layer 'add' inbound_nodes\[0\]\.args must be a tensor, a number"):
        from_keras(write_keras(tmp_path / "m.keras", config, keras3_weights({"dense": ("dense", [KERNEL, BIAS])})))


def test_a_nested_sequential_model_is_converted_with_its_weights(tmp_path):
    block = {"module": "keras", "class_name": "Sequential", "registered_name": None,
             "config": {"name": "block", "layers": [_layer("Dense", "dense", units=3)], "build_input_shape": [None, 4]}}
    path = _write_keras(tmp_path / "m.keras", [INPUT, block], {"sequential": ("block", []),
                                                                "sequential/layers/dense": ("dense", [KERNEL, BIAS])})
    model = from_keras(path)
    x = torch.ones(2, 4)
    torch.testing.assert_close(model(x), x @ torch.from_numpy(KERNEL) + 1)
    given = []

    def stand_in(config, weights):  # for the whole nested model: it gets all its arrays
        given.extend(weights)
        return torch.nn.Identity()

    from_keras(path, custom_layers={"block": stand_in})
    assert [a.shape for a in given] == [KERNEL.shape, BIAS.shape]
    path = _write_keras(tmp_path / "bad.keras", [INPUT, block], {
        "sequential": ("block", []), "sequential/layers/dense": ("dense", [np.ones((5, 3), "float32"), BIAS])})
    with pytest.raises(ModelFileError, match=r"'block/dense' \(Dense\): file arrays \[\(5, 3\), \(3,\)\]"):
        from_keras(path)


def _masked_pooling_config(pooling_kwargs):
    """ids -> Embedding(mask_zero=True) -> GlobalAveragePooling1D, given `pooling_kwargs` as Keras 3 writes
    them: the mask as the tensor of a NotEqual operation."""
    tokens = dict(_layer("InputLayer", "tokens", batch_shape=[None, 5], dtype="int32"), name="tokens", inbound_nodes=[])
    embedding = dict(_layer("Embedding", "embedding", input_dim=7, output_dim=3, mask_zero=True), name="embedding",
                     inbound_nodes=[{"args": [keras_tensor("tokens")], "kwargs": {}}])
    mask = _operation("NotEqual", "not_equal", [keras_tensor("tokens"), 0])
    pooling = dict(_layer("GlobalAveragePooling1D", "pooling"), name="pooling", inbound_nodes=[
        {"args": [keras_tensor("embedding")], "kwargs": pooling_kwargs}])
    return {"class_name": "Functional", "config": {
        "name": "functional", "layers": [tokens, embedding, mask, pooling],
        "input_layers": [["tokens", 0, 0]], "output_layers": [["pooling", 0, 0]]}}


def test_embedding_masks_are_the_not_equal_operation_keras_writes(tmp_path):
    table = np.arange(21, dtype="float32").reshape(7, 3)
    path = write_keras(tmp_path / "m.keras", _masked_pooling_config({"mask": keras_tensor("not_equal")}),
                       keras3_weights({"embedding": ("embedding", [table])}))
    model = from_keras(path)
    ids = torch.tensor([[1, 2, 0, 0, 0], [3, 3, 3, 3, 3]])
    expected = torch.stack([torch.from_numpy(table[[1, 2]]).mean(0), torch.from_numpy(table[3])])
    assert torch.equal(model(ids), expected)  # the padding (id 0) is left out of the average


def test_a_mask_that_is_not_one_tensor_or_a_tensor_keyword_other_than_mask_is_refused(tmp_path):
    with pytest.raises(UnsupportedKerasLayersError, match=r"called with mask=\[1, 0\]"):
        from_keras(write_keras(tmp_path / "a.keras", _masked_pooling_config({"mask": [1, 0]}), keras3_weights({})))
    with pytest.raises(UnsupportedKerasLayersError, match="given the tensor argument initial_state="):
        from_keras(write_keras(tmp_path / "b.keras", _masked_pooling_config(
            {"initial_state": keras_tensor("not_equal")}), keras3_weights({})))


def test_custom_layers_replace_an_operation_by_its_layer_name_only(tmp_path):
    """`Add` names the merge layer class too: a factory keyed by class leaves the operation alone."""
    class PlusTen(torch.nn.Module):
        def forward(self, x):
            return x + 10

    config = _functional_with(_operation("Add", "add", [keras_tensor("dense"), 3]), output="add")
    path = write_keras(tmp_path / "m.keras", config, keras3_weights({"dense": ("dense", [KERNEL, BIAS])}))
    x = torch.ones(2, 4)
    y = x @ torch.from_numpy(KERNEL) + 1
    torch.testing.assert_close(from_keras(path, custom_layers={"Add": lambda config, weights: PlusTen()})(x), y + 3)
    torch.testing.assert_close(from_keras(path, custom_layers={"add": lambda config, weights: PlusTen()})(x), y + 10)


def test_models_nested_too_deep_are_refused(tmp_path):
    model = _layer("Dense", "dense", units=3)
    for level in range(20):
        model = {"module": "keras", "class_name": "Sequential", "registered_name": None,
                 "config": {"name": f"block_{level}", "layers": [model], "build_input_shape": [None, 4]}}
    with pytest.raises(ModelFileError, match="models nest deeper than 16 levels"):
        from_keras(_write_keras(tmp_path / "m.keras", [INPUT, model], {}))
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
