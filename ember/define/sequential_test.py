import numpy as np
import pytest
import torch
from torch import nn

import ember
from ember import layers
from ember.errors import ShapeError


def seed_keras_convnet(data_format=None):
    return ember.Sequential([
        layers.Conv2D(32, (3, 3), activation="relu", padding="same", data_format=data_format,
                      input_shape=(28, 28, 1) if data_format == "channels_last" else (1, 28, 28)),
        layers.MaxPooling2D((2, 2), data_format=data_format),
        layers.Conv2D(64, (3, 3), activation="relu", padding="same", data_format=data_format),
        layers.MaxPooling2D((2, 2), data_format=data_format),
        layers.Dropout(0.25),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dropout(0.25),
        layers.Dense(10, activation="softmax"),
    ])


def test_seed_keras_convnet_has_the_seed_parameter_count_and_shapes():
    model = seed_keras_convnet("channels_last")
    table = model.summary(print_fn=None)
    assert table.total_params == 421_642 == model.count_params()
    assert table.trainable_params == 421_642 and table.non_trainable_params == 0
    assert table.size_bytes == 421_642 * 4
    shapes = [row.output_shape for row in table.rows]
    assert shapes[:2] == [(None, 28, 28, 32), (None, 14, 14, 32)]
    assert shapes[5] == (None, 3136) and shapes[-1] == (None, 10)
    assert "421,642" in str(table) and "conv2d_1 (Conv2D)" in str(table)


def test_parameters_exist_right_after_construction():
    model = ember.Sequential([layers.Dense(4, input_shape=(3,)), layers.Dense(2)])
    assert [tuple(p.shape) for p in model.parameters()] == [(4, 3), (4,), (2, 4), (2,)]
    assert model.output_shape == (2,)


def test_channels_last_model_matches_channels_first_on_transposed_input():
    torch.manual_seed(0)
    first = seed_keras_convnet("channels_first").eval()
    last = seed_keras_convnet("channels_last").eval()
    last.load_state_dict(first.state_dict())
    x = torch.rand(3, 1, 28, 28)
    # Flatten order differs (HWC vs CHW), so compare before the Dense layers.
    a = first.layers[3](first.layers[2](first.layers[1](first.layers[0](x))))
    b = last.layers[3](last.layers[2](last.layers[1](last.layers[0](x.permute(0, 2, 3, 1)))))
    torch.testing.assert_close(a.permute(0, 2, 3, 1), b)


def test_set_image_data_format_makes_the_seed_keras_code_build_unchanged():
    ember.config.set_image_data_format("channels_last")
    model = ember.Sequential([layers.Conv2D(8, 3, padding="same", input_shape=(28, 28, 1)), layers.MaxPooling2D()])
    assert model.output_shape == (14, 14, 8)
    assert model(torch.rand(2, 28, 28, 1)).shape == (2, 14, 14, 8)


def test_plain_torch_modules_mix_with_ember_layers_both_ways():
    model = ember.Sequential([layers.Input((1, 8, 8)), nn.Conv2d(1, 4, 3), layers.Flatten(), layers.Dense(5)])
    assert model.output_shape == (5,)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = layers.Dense(6, activation="gelu")  # built on first call
            self.head = nn.Linear(6, 2)

        def forward(self, x):
            return self.head(self.body(x))

    net = Net()
    assert net(torch.rand(4, 3)).shape == (4, 2)
    assert net.body.weight.shape == (6, 3)


def test_same_padding_with_stride_pads_like_tensorflow():
    conv = layers.Conv2D(2, 3, strides=2, padding="same", input_shape=(1, 7, 7))
    assert conv.output_shape == (2, 4, 4)
    conv = layers.Conv2D(2, 4, padding="same", input_shape=(1, 6, 6))  # even kernel: asymmetric
    assert conv.output_shape == (2, 6, 6)
    pool = layers.MaxPool2D(2, padding="same", input_shape=(1, 5, 5))
    assert pool.output_shape == (1, 3, 3)


def test_missing_channel_axis_names_layer_and_shapes():
    model = seed_keras_convnet("channels_last")
    with pytest.raises(ShapeError, match=r"layer 'conv2d' \(Conv2D\) expected input of shape \(batch, H, W, 1\), "
                                         r"received \(2, 28, 28\)"):
        model(torch.rand(2, 28, 28))


def test_wrong_feature_count_names_the_dense_layer():
    model = ember.Sequential([layers.Dense(4, input_shape=(3,)), layers.Dense(2)])
    with pytest.raises(ShapeError, match="layer 'dense'.*expected.*3.*received \\(5, 7\\)"):
        model(torch.rand(5, 7))


def test_config_round_trip_rebuilds_the_same_architecture():
    model = seed_keras_convnet("channels_last")
    clone = ember.Sequential.from_config(model.get_config())
    clone.load_state_dict(model.state_dict())
    x = torch.rand(2, 28, 28, 1)
    torch.testing.assert_close(clone.eval()(x), model.eval()(x))


def test_all_listed_layers_build_and_run():
    model = ember.Sequential([
        layers.Input((12,)), layers.Embedding(50, 8), layers.Conv1D(6, 3, padding="same"),
        layers.BatchNorm(), layers.AvgPool1D(2), layers.LayerNorm(), layers.Activation("gelu"),
        layers.GlobalAvgPool1D(), layers.Dense(3, activation="softmax"),
    ])
    out = model(torch.randint(0, 50, (4, 12)))
    assert out.shape == (4, 3)
    np.testing.assert_allclose(out.sum(-1).detach().numpy(), 1.0, rtol=1e-5)
    image = ember.Sequential([layers.Input((3, 8, 8)), layers.Conv2D(4, 3), layers.BatchNormalization(),
                              layers.AveragePooling2D(), layers.GlobalAveragePooling2D()])
    assert image(torch.rand(2, 3, 8, 8)).shape == (2, 4)


def test_unknown_activation_lists_known_ones():
    with pytest.raises(ValueError, match="unknown activation 'relux'.*relu"):
        layers.Dense(3, activation="relux")
