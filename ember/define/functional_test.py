import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import ember
from ember import layers as L
from ember import ops
from ember.errors import ShapeError


def two_inputs_two_outputs():
    image = ember.Input((6, 6, 1), name="image")
    features = ember.Input((3,), name="features")
    x = L.Conv2D(4, 3, activation="relu", data_format="channels_last")(image)
    x = L.GlobalAveragePooling2D(data_format="channels_last")(x)
    joined = L.Concatenate()([x, L.Dense(4, activation="relu")(features)])
    label = L.Dense(3, name="label")(joined)
    value = L.Dense(1, name="value")(joined)
    return ember.Model(inputs=[image, features], outputs=[label, value], name="two_heads")


def test_a_graph_of_layer_calls_is_a_module_taking_a_list_or_a_dict():
    ember.seed(0)
    model = two_inputs_two_outputs()
    assert isinstance(model, ember.Model) and isinstance(model, torch.nn.Module)
    assert model.input_names == ["image", "features"] and model.output_names == ["label", "value"]
    image, features = torch.randn(5, 6, 6, 1), torch.randn(5, 3)
    label, value = model([image, features])
    assert label.shape == (5, 3) and value.shape == (5, 1)
    by_name = model({"features": features, "image": image})
    assert torch.equal(by_name[0], label) and torch.equal(by_name[1], value)
    with pytest.raises(ValueError, match=r"takes 2 inputs \(image, features\), got 1"):
        model(image)
    with pytest.raises(ValueError, match=r"lacks \['features'\]"):
        model({"image": image})


def test_shapes_are_inferred_as_calls_are_recorded_and_a_wrong_rank_names_the_layer():
    tokens = ember.Input((7,), dtype="int64")
    x = L.Embedding(20, 4)(tokens)
    assert x.shape == (None, 7, 4)
    assert L.Dense(5)(x).shape == (None, 7, 5)
    free = ember.Input((None, 4))
    assert L.Dense(2)(free).shape == (None, None, 2)  # a free size stays free
    with pytest.raises(ShapeError, match=r"layer 'conv' \(Conv2D\) expected input of shape .*received \(batch, 7, 4\)"):
        L.Conv2D(2, 3, name="conv")(x)
    dense = L.Dense(3, name="dense")
    dense(ember.Input((4,)))
    with pytest.raises(ShapeError, match="layer 'dense'"):
        dense(ember.Input((5,)))  # built for 4 features


def test_a_layer_called_twice_shares_its_weights():
    a, b = ember.Input((4,), name="a"), ember.Input((4,), name="b")
    shared = L.Dense(2)
    model = ember.Model([a, b], L.Subtract()([shared(a), shared(b)]))
    assert sorted(model.state_dict()) == ["layers.dense.bias", "layers.dense.weight"]
    x = torch.randn(3, 4)
    assert torch.allclose(model([x, x]), torch.zeros(3, 2))


def test_models_are_layers_of_other_models():
    inner_in = ember.Input((4,))
    inner = ember.Model(inner_in, L.Dense(4, activation="relu")(inner_in), name="block")
    stack = ember.Sequential([ember.Input((4,)), L.Dense(4), L.Dense(4)], name="stack")
    x = ember.Input((4,), name="x")
    y = L.Add()([inner(x), inner(stack(x))])
    model = ember.Model(x, L.Dense(1)(y))
    data = torch.randn(6, 4)
    manual = model.layers["dense"](inner(data) + inner(stack(data)))
    assert torch.allclose(model(data), manual)
    assert {"block", "stack", "add", "dense"} == set(model.layers)


def test_operators_and_ops_record_and_run_like_torch():
    x = ember.Input((4,), name="x")
    y = ops.concatenate([x * 2.0 + 1, -x[:, :2]], axis=-1)
    z = ops.mean(ops.relu(y - x[:, 0:1]), axis=-1, keepdims=True) / 3
    model = ember.Model(x, [y, z ** 2])
    data = torch.randn(5, 4)
    y_torch = torch.cat([data * 2 + 1, -data[:, :2]], -1)
    out_y, out_z = model(data)
    assert torch.allclose(out_y, y_torch)
    assert torch.allclose(out_z, (torch.relu(y_torch - data[:, 0:1]).mean(-1, keepdim=True) / 3) ** 2)
    assert torch.equal(ops.concatenate([data, data], axis=-1), torch.cat([data, data], -1))  # real tensors: runs
    with pytest.raises(TypeError, match="symbolic tensor has no value"):
        if x:
            pass


def test_graphs_that_cannot_be_a_model_say_why():
    a, b = ember.Input((4,), name="a"), ember.Input((4,), name="b")
    with pytest.raises(ValueError, match=r"input\(s\) \['b'\] reach no output"):
        ember.Model([a, b], L.Dense(2)(a))
    with pytest.raises(ValueError, match="depends on the input 'b', which is not in this model's inputs"):
        ember.Model(a, L.Add()([a, b]))
    with pytest.raises(TypeError, match="inputs must be tensors made by ember.Input"):
        ember.Model(L.Dense(2)(a), L.Dense(2)(a))


def test_summary_shows_what_each_call_is_connected_to():
    text = str(two_inputs_two_outputs().summary(print_fn=None))
    assert "Connected to" in text and "image (InputLayer)" in text
    row = next(line for line in text.splitlines() if line.startswith("concatenate (Concatenate)"))
    assert row.split()[2:] == ["(None,", "8)", "0", "global_avg_pool2d[0][0],", "dense[0][0]"]


def test_saved_and_loaded_in_a_fresh_process_without_the_code_that_wrote_it(tmp_path):
    ember.seed(0)
    model = two_inputs_two_outputs()
    image, features = torch.randn(4, 6, 6, 1), torch.randn(4, 3)
    model.save(tmp_path / "model.ember")
    np.save(tmp_path / "image.npy", image.numpy())
    np.save(tmp_path / "features.npy", features.numpy())
    label, value = model([image, features])
    script = ("import numpy as np, torch, ember, sys\n"
              f"m = ember.load({str(tmp_path / 'model.ember')!r})\n"
              f"x = [torch.from_numpy(np.load({str(tmp_path / 'image.npy')!r})), "
              f"torch.from_numpy(np.load({str(tmp_path / 'features.npy')!r}))]\n"
              "label, value = m(x)\n"
              f"np.save({str(tmp_path / 'out.npy')!r}, label.detach().numpy())\n"
              "print(type(m).__name__, m.output_names)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert result.returncode == 0, result.stderr
    assert "Functional ['label', 'value']" in result.stdout
    assert np.array_equal(np.load(tmp_path / "out.npy"), label.detach().numpy())


def test_the_config_is_json_and_rebuilds_nested_models():
    x = ember.Input((4,))
    inner = ember.Model(x, L.Dense(4)(x), name="inner")
    outer_in = ember.Input((4,), name="outer_in")
    model = ember.Model(outer_in, inner(inner(outer_in)))
    config = json.loads(json.dumps(model.get_config()))
    rebuilt = type(model).from_config(config)
    rebuilt.load_state_dict(model.state_dict())
    data = torch.randn(2, 4)
    assert torch.equal(rebuilt(data), model(data))


def test_a_functional_model_trains_and_exports(tmp_path):
    ember.seed(0)
    x = ember.Input((4,), name="x")
    h = L.Dense(16, activation="relu")(x)
    model = ember.Model(x, L.Dense(3)(L.Add()([h, L.Dense(16)(h)])))
    rng = np.random.default_rng(0)
    data = rng.normal(size=(128, 4)).astype(np.float32)
    labels = (data @ rng.normal(size=(4, 3))).argmax(1)
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"], from_logits=True, lr=0.02,
                  precision="fp32")
    history = model.fit(data, labels, epochs=15, batch_size=32, verbose=0)
    assert history.history["accuracy"][-1] > 0.9
    report = model.export(tmp_path / "export", format="onnx", example=torch.from_numpy(data[:2]))
    assert report.max_abs_diff < 1e-4


def test_any_torch_module_wrapped_by_ember_wrap_is_a_layer_but_not_json():
    x = ember.Input((4,), name="x")
    head = ember.wrap(torch.nn.Linear(4, 2))
    model = ember.Model(x, head(L.Dense(4)(x)))
    assert model(torch.randn(3, 4)).shape == (3, 2)
    with pytest.raises(TypeError, match=r"cannot describe layer 'wrapped' \(Wrapped\) as JSON.*save_weights\(\)"):
        model.get_config()
