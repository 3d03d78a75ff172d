"""A crafted model config raises ModelFileError naming the file, the place and what was wrong;
sizes it declares are checked against the weights the file holds before memory is allocated."""
import copy
import json
import os

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ember.saving import ModelFileError
from ember.keras import UnsupportedKerasLayersError, from_keras
from testing.keras import (BIAS, DENSE, INPUT, KERNEL, functional_dense_config, keras3_weights, layer,
                           peak_memory_of, sequential_config, write_keras)

WEIGHTS = keras3_weights({"dense": ("dense", [KERNEL, BIAS])})


def _load(tmp_path, config, weights=WEIGHTS, **kwargs):
    return from_keras(write_keras(tmp_path / "m.keras", config, weights, **kwargs))


def _sequential(dense=None, input_layer=None):
    return sequential_config([input_layer or INPUT, dense or DENSE])


def _with(config, path, value):
    """A copy of `config` with the value at `path` (keys and indices) replaced."""
    config = copy.deepcopy(config)
    target = config
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return config


def test_layers_that_are_lists_name_the_file_and_the_place(tmp_path):
    config = _sequential()
    config["config"]["layers"] = [["InputLayer", {}], ["Dense", {"units": 3}]]
    with pytest.raises(ModelFileError) as raised:
        _load(tmp_path, config)
    assert str(raised.value) == (f"{tmp_path / 'm.keras'} (config.json): config.layers[0] must be a JSON object "
                                 "with class_name and config, found array ['InputLayer', {}]")


LAYER = ("config", "layers", 1)
INPUT_LAYER = ("config", "layers", 0)


@pytest.mark.parametrize("path, value, message", [
    (("config",), [], "config must be a JSON object, found array []"),
    (("config", "layers"), {"0": DENSE}, "config.layers must be an array of layers, found object"),
    (("class_name",), 7, "class_name must be a string such as 'Sequential', found integer 7"),
    (LAYER, "Dense", "config.layers[1] must be a JSON object with class_name and config, found string 'Dense'"),
    (LAYER + ("class_name",), ["Dense"], "config.layers[1].class_name must be a string, found array"),
    (LAYER + ("config",), None, "config.layers[1].config must be a JSON object, found NoneType None"),
    (LAYER + ("config",), [3], "config.layers[1].config must be a JSON object, found array [3]"),
    (LAYER + ("config", "name"), {"n": 1}, "config.layers[1].config.name must be a string, found object"),
    (LAYER + ("config", "name"), "input_layer", "two layers are named 'input_layer'"),
    (INPUT_LAYER + ("config", "batch_shape"), [None, "4"], "the InputLayer's batch_shape must be a batch shape"),
    (INPUT_LAYER + ("config", "batch_shape"), [None, -4], "found array [None, -4]"),
    (INPUT_LAYER + ("config", "batch_shape"), [None, 4.0], "found array [None, 4.0]"),
    (INPUT_LAYER + ("config", "batch_shape"), [None, 2**40], "integers 1 to 2147483647"),
    (INPUT_LAYER + ("config", "batch_shape"), [None] + [2] * 12, "at most 8 axes"),
    (INPUT_LAYER + ("config", "batch_shape"), "[None, 4]", "found string"),
    (INPUT_LAYER + ("config", "dtype"), "object", "the InputLayer's dtype must be one of float16"),
    (INPUT_LAYER + ("config", "dtype"), {"config": 5}, "the InputLayer's dtype must be a dtype name or policy"),
    (LAYER + ("config", "units"), "three", "layer 'dense' (Dense) cannot be built from its config for input shape "
                                           "(4,) (ValueError: invalid literal for int() with base 10: 'three')"),
    (LAYER + ("config", "units"), None, "layer 'dense' (Dense) cannot be built from its config"),
    (LAYER + ("config", "units"), -3, "layer 'dense' (Dense) cannot be built from its config"),
    (LAYER + ("config", "units"), 2**70, "layer 'dense' (Dense) cannot be built from its config"),
    (LAYER + ("config", "activation"), 5, "'dense' (Dense): custom activation 5 is not supported"),
])
def test_wrong_types_in_a_sequential_config(tmp_path, path, value, message):
    with pytest.raises(ModelFileError) as raised:
        _load(tmp_path, _with(_sequential(), path, value))
    assert str(raised.value).startswith(str(tmp_path / "m.keras")) and message in str(raised.value)


NODE = ("config", "layers", 1, "inbound_nodes", 0)


@pytest.mark.parametrize("path, value, message", [
    (("config", "layers", 1, "inbound_nodes"), {}, "config.layers[1].inbound_nodes must be an array"),
    (NODE, 5, "layer 'dense' inbound_nodes[0] must be an inbound node"),
    (NODE + ("args", 0, "config"), [], "a __keras_tensor__'s config must be a JSON object"),
    (NODE + ("args", 0, "config", "keras_history"), ["input_layer", "0", 0], "must be [layer name, node index"),
    (NODE + ("args", 0, "config", "keras_history"), ["input_layer", 0], "found array ['input_layer', 0]"),
    (NODE + ("args", 0, "config", "keras_history"), ["nowhere", 0, 0], "nodes ['dense:0'] wait for tensors"),
    (("config", "output_layers"), [], "config.output_layers must be a non-empty array"),
    (("config", "output_layers"), [["dense", 0, -1]], "config.output_layers must be [layer name"),
    (("config", "output_layers"), [["elsewhere", 0, 0]], "config.output_layers names ['elsewhere:0']"),
    (("config", "input_layers"), "input_layer", "config.input_layers must be a non-empty array"),
    (("config", "layers", 1, "name"), "dense.1", "layer names ['dense.1'] are empty or contain '.'"),
])
def test_wrong_types_in_a_functional_graph(tmp_path, path, value, message):
    with pytest.raises(ModelFileError) as raised:
        _load(tmp_path, _with(functional_dense_config(), path, value))
    assert message in str(raised.value)


def test_outputs_no_layer_makes_and_tensor_arguments_a_module_does_not_take_are_refused(tmp_path):
    with pytest.raises(ModelFileError, match=r"wait for tensors no layer produces .*'input_layer:0:1'"):
        _load(tmp_path, _with(functional_dense_config(), NODE + ("args", 0, "config", "keras_history"),
                              ["input_layer", 0, 1]))
    with pytest.raises(UnsupportedKerasLayersError, match="'dense' .Dense. is given the tensor argument "
                                                          "initial_state=, which its ember module Dense does not take"):
        _load(tmp_path, _with(functional_dense_config(), NODE + ("kwargs",), {"initial_state": NODE_TENSOR}))
    with pytest.raises(UnsupportedKerasLayersError, match="'dense' .Dense. is given the tensor argument mask=, "
                                                          "which its ember module Dense does not take"):
        _load(tmp_path, _with(functional_dense_config(), NODE + ("kwargs",), {"mask": NODE_TENSOR}))


NODE_TENSOR = {"class_name": "__keras_tensor__", "config": {"keras_history": ["input_layer", 0, 0]}}


def test_deeply_nested_node_arguments_are_walked_without_recursion(tmp_path):
    """JSON nesting the parser accepts (up to about the recursion limit) is walked without a
    RecursionError; deeper nesting is the parser's error."""
    def nested(depth):
        text = json.dumps(_with(functional_dense_config(), NODE + ("args",), ["NESTED"]))
        return text.replace('"NESTED"', "[" * depth + json.dumps(NODE_TENSOR) + "]" * depth).encode()

    with pytest.raises(ModelFileError, match="layer 'dense' .Dense. cannot be built"):  # a list of lists of...
        _load(tmp_path, nested(800))
    with pytest.raises(ModelFileError, match="config.json nests too deeply"):
        _load(tmp_path, nested(100_000))


@pytest.mark.parametrize("metadata, message", [
    (b"[]", "metadata.json holds a JSON list; expected an object"),
    ({"keras_version": 3}, "metadata.json's keras_version must be a string such as \"3.15.1\", found integer 3"),
    (b"\xff{}", "metadata.json is not UTF-8 text"),
])
def test_wrong_metadata(tmp_path, metadata, message):
    with pytest.raises(ModelFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _load(tmp_path, _sequential(), metadata=metadata)


def test_legacy_model_config_must_be_a_json_object(tmp_path):
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as h5:
        h5.attrs["model_config"] = json.dumps([INPUT, DENSE])
        h5.create_group("model_weights").attrs["layer_names"] = []
    with pytest.raises(ModelFileError, match="attribute model_config holds a JSON list; expected an object"):
        from_keras(path)


# --- sizes the config declares ---------------------------------------------------------------------
@pytest.mark.parametrize("layers", [
    [INPUT, layer("Dense", "dense", units=2**34)],
    [layer("InputLayer", "input_layer", batch_shape=[None, 8, 8, 1]),
     layer("Conv2D", "dense", filters=2**34, kernel_size=3)],
    [layer("InputLayer", "input_layer", batch_shape=[None, 4], dtype="int32"),
     layer("Embedding", "dense", input_dim=2**40, output_dim=3)],
    [layer("InputLayer", "input_layer", batch_shape=[None, 5, 4]), layer("LSTM", "dense", units=2**20)],
    [layer("InputLayer", "input_layer", batch_shape=[None, 2**20, 2**20, 1]), layer("Flatten", "flatten"),
     layer("Dense", "dense", units=3)],
], ids=["dense", "conv2d", "embedding", "lstm", "flatten-dense"])
def test_huge_layers_are_refused_before_memory_is_allocated(tmp_path, layers):
    """Each asks for more than 256 GiB of parameters; the file holds 60 bytes of them."""
    path = write_keras(tmp_path / "m.keras", sequential_config(layers), WEIGHTS)
    assert path.stat().st_size < 16 * 1024
    outcome, peak = peak_memory_of(lambda: from_keras(path))
    assert isinstance(outcome, ModelFileError), repr(outcome)
    assert "the weights do not match the architecture" in str(outcome) and "'dense'" in str(outcome)
    assert peak < 64 * 2**20


def test_parameters_are_allocated_and_filled_once_they_fit(tmp_path):
    model = _load(tmp_path, _sequential())
    state = model.state_dict()
    assert not any(tensor.is_meta for tensor in state.values())
    np.testing.assert_array_equal(state["layers.0.weight"].numpy(), KERNEL.T)
    np.testing.assert_array_equal(state["layers.0.bias"].numpy(), BIAS)


# --- any JSON value anywhere -----------------------------------------------------------------------
EXAMPLES = int(os.environ.get("EMBER_FUZZ_EXAMPLES", "150"))
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    | st.sampled_from([0, -1, 2**31, 2**63, "Dense", "InputLayer", "__keras_tensor__", "same", "relu"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8)


def _paths(value, prefix=()):
    """Every (key or index) path into a JSON value."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield prefix + (key,)
        yield from _paths(child, prefix + (key,))


SEEDS = {"sequential": _sequential(), "functional": functional_dense_config()}
PATHS = [(seed, path) for seed, config in SEEDS.items() for path in _paths(config)]


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.sampled_from(PATHS), value=JSON_VALUES)
def test_any_json_value_anywhere_gives_a_model_or_a_model_file_error(tmp_path, where, value):
    seed, path = where
    config = _with(SEEDS[seed], path, value)
    try:
        _load(tmp_path, config)
    except ModelFileError:
        pass
