"""from_keras end to end: models built and trained with Keras 3 (torch backend, in a
subprocess), loaded by ember where `import keras` fails, compared with Keras' predict."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import ember
from ember.define import layers as L

DATA = Path(__file__).parent / "data" / "keras"
TOLERANCE = {"seed_convnet": 1e-5, "resnet_block": 1e-5, "separable": 1e-5, "text": 1e-4, "operations": 1e-5,
             "nested": 1e-5, "resampling": 1e-5, "decoder": 1e-5, "sequence": 1e-5, "video": 1e-5, "attention": 1e-5,
             "repeated": 1e-5, "volume": 1e-5, "next_frames": 1e-5}


def _keras_made(tmp_path_factory, script):
    """The folder `script` (in tests/data/keras) writes its Keras models to, run with Keras' torch backend."""
    out = tmp_path_factory.mktemp(script.removesuffix(".py"))
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    subprocess.run([sys.executable, str(DATA / script), str(out)], check=True, env=env, capture_output=True,
                   timeout=600)
    return out


@pytest.fixture(scope="session")
def keras_models(tmp_path_factory):
    return _keras_made(tmp_path_factory, "make_keras3_models.py")


@pytest.fixture
def no_keras(monkeypatch):
    """`import keras` (or TensorFlow) raises ImportError while the test runs."""
    for name in ("keras", "tf_keras", "tensorflow"):
        monkeypatch.setitem(sys.modules, name, None)


def _run(model, x, channels_first=False):
    x = torch.from_numpy(x)
    if channels_first:
        x = x.permute(0, 3, 1, 2)
    model.eval()
    with torch.no_grad():
        return model(x).numpy()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TOLERANCE))
@pytest.mark.parametrize("extension", [".keras", ".h5"])
def test_matches_keras_predict(keras_models, no_keras, name, extension):
    x = np.load(keras_models / f"{name}_inputs.npy")
    expected = np.load(keras_models / f"{name}_predictions.npy")
    model = ember.from_keras(keras_models / f"{name}{extension}")
    assert np.abs(_run(model, x) - expected).max() <= TOLERANCE[name]
    if x.ndim == 4:  # NCHW model: same numbers from NCHW inputs
        model = ember.from_keras(keras_models / f"{name}{extension}", data_format="channels_first")
        assert np.abs(_run(model, x, channels_first=True) - expected).max() <= TOLERANCE[name]


def test_genuine_tf_keras2_h5(no_keras):
    # Written by tf.keras 2.21 (make_tf_keras2_model.py): batch_input_shape, `kernel:0` names,
    # strided "same" padding, Flatten -> Dense, GRU reset_after, Keras 2's hard_sigmoid.
    x = np.load(DATA / "tf_keras2_convnet_inputs.npy")
    expected = np.load(DATA / "tf_keras2_convnet_predictions.npy")
    for data_format in ("channels_last", "channels_first"):
        model = ember.from_keras(DATA / "tf_keras2_convnet.h5", data_format=data_format)
        got = _run(model, x, channels_first=data_format == "channels_first")
        assert np.abs(got - expected).max() <= 1e-5, data_format


def _ember_convnet(data_format):
    shape = (28, 28, 1) if data_format == "channels_last" else (1, 28, 28)
    return ember.Sequential([
        L.Input(shape),
        L.Conv2D(32, 3, activation="relu", padding="same", data_format=data_format),
        L.MaxPooling2D(2, data_format=data_format),
        L.Conv2D(64, 3, activation="relu", padding="same", data_format=data_format),
        L.MaxPooling2D(2, data_format=data_format),
        L.Dropout(0.25), L.Flatten(), L.Dense(128, activation="relu"), L.Dropout(0.25),
        L.Dense(10, activation="softmax"),
    ])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TOLERANCE))
@pytest.mark.parametrize("weights", [".weights.h5", ".legacy.weights.h5"])
def test_weights_only_files_load_into_the_converted_architecture(keras_models, no_keras, name, weights):
    model = ember.from_keras(keras_models / f"{name}.keras")
    with torch.no_grad():  # all but statistics Keras keeps in the config (a Normalization given its mean)
        for module in model.modules():
            if not isinstance(module, ember.layers.Normalization):
                for tensor in [*module.parameters(recurse=False), *module.buffers(recurse=False)]:
                    tensor.zero_()
    ember.load_keras_weights(model, keras_models / f"{name}{weights}")  # nested models too
    x, expected = np.load(keras_models / f"{name}_inputs.npy"), np.load(keras_models / f"{name}_predictions.npy")
    assert np.abs(_run(model, x) - expected).max() <= TOLERANCE[name]


@pytest.mark.slow
@pytest.mark.parametrize("file", ["seed_convnet.weights.h5", "seed_convnet.h5", "seed_convnet.keras"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_load_keras_weights_into_an_ember_model(keras_models, no_keras, file, data_format):
    model = ember.load_keras_weights(_ember_convnet(data_format), keras_models / file)
    x = np.load(keras_models / "seed_convnet_inputs.npy")
    expected = np.load(keras_models / "seed_convnet_predictions.npy")
    got = _run(model, x, channels_first=data_format == "channels_first")
    assert np.abs(got - expected).max() <= 1e-5


@pytest.mark.slow
def test_load_keras_weights_lists_what_does_not_fit(keras_models, no_keras):
    model = ember.Sequential([L.Input((28, 28, 1)), L.Conv2D(16, 3, padding="same", data_format="channels_last"),
                              L.Flatten(), L.Dense(10)])
    with pytest.raises(ValueError, match=r"'conv2d' \(Conv2D\).*\(16, 1, 3, 3\)"):
        ember.load_keras_weights(model, keras_models / "seed_convnet.weights.h5")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["seed_convnet", "resnet_block", "operations", "nested"])
def test_converted_model_fine_tunes_saves_and_loads(keras_models, no_keras, tmp_path, name):
    model = ember.from_keras(keras_models / f"{name}.keras")
    x = np.load(keras_models / f"{name}_inputs.npy")
    y = np.arange(len(x)) % 5
    before = _run(model, x)
    model.compile("adam", "sparse_categorical_crossentropy", lr=1e-3)
    history = model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    after = _run(model, x)
    assert np.abs(after - before).max() > 1e-6  # the weights moved
    model.save(tmp_path / "model.ember")
    assert np.abs(_run(ember.load(tmp_path / "model.ember"), x) - after).max() == 0


@pytest.mark.slow
# text: Embedding, LSTM, GRU (go_backwards), Conv1D; resampling and decoder: padding, cropping, resizing,
# transposed convolutions, preprocessing and normalization layers, a broadcasting Multiply; video:
# TimeDistributed; attention: MultiHeadAttention (causal, gated); volume: the 3D layers; next_frames: ConvLSTM
@pytest.mark.parametrize("name", ["resnet_block", "text", "resampling", "decoder", "video", "attention", "volume",
                                  "next_frames"])
def test_converted_model_exports_to_onnx(keras_models, no_keras, tmp_path, name):
    import onnxruntime

    model = ember.from_keras(keras_models / f"{name}.keras")
    x = np.load(keras_models / f"{name}_inputs.npy")
    model.export(tmp_path / "export", format="onnx", example=torch.from_numpy(x[:2]))
    session = onnxruntime.InferenceSession(str(tmp_path / "export" / "model.onnx"))
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    assert np.abs(got - np.load(keras_models / f"{name}_predictions.npy")).max() <= TOLERANCE[name]
    if name == "text":  # Embedding, Conv1D, GRU, LSTM: nothing fixes the length, though Keras' Input says 12
        assert [d for d in session.get_inputs()[0].shape] == ["batch", "sequence"]
        signature = json.loads((tmp_path / "export" / "signature.json").read_text())
        assert signature["inputs"][0]["shape"] == [-1, -1]
        shorter = np.ascontiguousarray(x[:, :9])
        assert np.abs(session.run(None, {session.get_inputs()[0].name: shorter})[0] - _run(model, shorter)).max() <= 1e-4


@pytest.mark.slow
def test_cli_convert_and_ember_load_in_a_process_without_keras(keras_models, tmp_path):
    out = tmp_path / "text.ember"
    script = ("import sys\n"
              "for name in ('keras', 'tf_keras', 'tensorflow'): sys.modules[name] = None\n"
              "from ember.cli import main\n"
              f"sys.exit(main(['convert', {str(keras_models / 'text.h5')!r}, '--out', {str(out)!r}]))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Functional" in result.stdout  # a converted functional model is an ember functional model
    x = np.load(keras_models / "text_inputs.npy")
    expected = np.load(keras_models / "text_predictions.npy")
    assert np.abs(_run(ember.load(out), x) - expected).max() <= 1e-4
    assert np.abs(_run(ember.load(keras_models / "text.keras"), x) - expected).max() <= 1e-4


class _Scale(torch.nn.Module):
    def forward(self, x):
        return 2 * x


class _Pair(torch.nn.Module):
    def forward(self, pair):
        return pair[0] + pair[1]


@pytest.mark.slow
@pytest.mark.parametrize("extension", [".keras", ".h5"])
def test_custom_layers_are_named_and_replaced_by_any_key(keras_models, no_keras, extension):
    """Registered custom layers (`my>Scale`; legacy .h5 files write it as the class name), one
    called on a list of tensors: the error names the key that then works."""
    path = keras_models / f"custom{extension}"
    with pytest.raises(ember.keras.UnsupportedKerasLayersError) as raised:
        ember.from_keras(path)
    message = str(raised.value)
    assert "'scale' is a custom layer (Scale): supply a torch equivalent with custom_layers={'Scale'" in message
    assert "'pair' is a custom layer (Pair)" in message and "Supported layers" not in message
    x, expected = np.load(keras_models / "custom_inputs.npy"), np.load(keras_models / "custom_predictions.npy")
    for keys in (("Scale", "Pair"), ("my>Scale", "my>Pair"), ("scale", "pair")):
        model = ember.from_keras(path, custom_layers={keys[0]: lambda config, weights: _Scale(),
                                                      keys[1]: lambda config, weights: _Pair()})
        assert np.abs(_run(model, x) - expected).max() <= 1e-5, keys


@pytest.mark.slow
def test_batch_norm_statistics_move_as_keras_moves_them(keras_models, no_keras):
    """One step at learning rate 0 from the same weights: Keras moves moving_variance toward the
    biased batch variance (torch's BatchNorm toward the unbiased one: ~1e-2 apart at 4 samples)."""
    model = ember.from_keras(keras_models / "batch_norm_step.keras")
    model.compile("sgd", "mse", lr=0.0, precision="fp32")
    x, y = np.load(keras_models / "batch_norm_step_inputs.npy"), np.load(keras_models / "batch_norm_step_targets.npy")
    model.fit(x, y, epochs=1, batch_size=len(x), verbose=0)
    keras_moving = np.load(keras_models / "batch_norm_step_moving.npz")
    batch_norms = {module.name: module for module in model.modules() if isinstance(module, L.BatchNormalization)}
    assert len(batch_norms) == 2
    for name, module in batch_norms.items():
        np.testing.assert_allclose(module.running_mean.numpy(), keras_moving[f"{name}/moving_mean"], atol=1e-6)
        np.testing.assert_allclose(module.running_var.numpy(), keras_moving[f"{name}/moving_variance"], atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("extension", [".keras", ".h5"])
def test_a_frozen_base_fine_tunes_as_keras(keras_models, no_keras, extension):
    """trainable=False layers (a whole base model, a BatchNormalization) keep their weights and statistics
    through fit, as Keras keeps them; one SGD step then gives Keras' predictions."""
    model = ember.from_keras(keras_models / f"frozen_base{extension}")
    before = {key: value.clone() for key, value in model.state_dict().items()}
    model.compile("sgd", "mse", lr=0.1, precision="fp32")
    x, y = np.load(keras_models / "frozen_base_inputs.npy"), np.load(keras_models / "frozen_base_targets.npy")
    model.fit(x, y, epochs=1, batch_size=len(x), shuffle=False, verbose=0)
    after = model.state_dict()
    frozen = [key for key in before if key.startswith(("layers.base.", "layers.frozen_norm."))]
    assert len(frozen) == 10 and all(torch.equal(before[key], after[key]) for key in frozen)
    assert not torch.equal(before["layers.trained_norm.running_mean"], after["layers.trained_norm.running_mean"])
    assert np.abs(_run(model, x) - np.load(keras_models / "frozen_base_after.npy")).max() <= 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("extension", [".keras", ".h5"])
def test_regularizers_make_a_fine_tuning_step_keras_own(keras_models, no_keras, extension):
    """kernel/bias/recurrent/gamma and activity regularizers (L1, L2, L1L2) join the loss as in Keras: one
    SGD step reports Keras' loss and leaves Keras' weights."""
    model = ember.from_keras(keras_models / f"regularized{extension}")
    model.compile("sgd", "mse", lr=0.1, precision="fp32")
    x, y = np.load(keras_models / "regularized_inputs.npy"), np.load(keras_models / "regularized_targets.npy")
    loss = model.fit(x, y, epochs=1, batch_size=len(x), shuffle=False, verbose=0).history["loss"][0]
    assert loss == pytest.approx(float(np.load(keras_models / "regularized_loss.npy")), rel=1e-5)
    assert np.abs(_run(model, x) - np.load(keras_models / "regularized_after.npy")).max() <= 1e-5


@pytest.fixture(scope="session")
def masked_keras_models(tmp_path_factory):
    return _keras_made(tmp_path_factory, "make_keras3_masked_models.py")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["masked_bidirectional", "masked_pooling", "masked_features", "masked_attention",
                                  "masked_states", "masked_luong"])
@pytest.mark.parametrize("extension", [".keras", ".h5"])
def test_masked_text_models_match_keras_and_ignore_padding(masked_keras_models, no_keras, name, extension):
    """Embedding(mask_zero=True) or Masking, then Bidirectional / LSTM / GRU / SimpleRNN and pooling, on a
    batch whose rows end in padding: Keras' numbers, and each row's output is that of the row alone."""
    x = np.load(masked_keras_models / f"{name}_inputs.npy")
    expected = np.load(masked_keras_models / f"{name}_predictions.npy")
    model = ember.from_keras(masked_keras_models / f"{name}{extension}")
    got = _run(model, x)
    assert np.abs(got - expected).max() <= 1e-5
    if name == "masked_features":  # Keras' GlobalMaxPooling1D takes no mask: the padded steps' zeros count
        return
    for row, length in enumerate((x != 0).sum(1)):
        alone = _run(model, np.ascontiguousarray(x[row:row + 1, :length]))
        assert np.abs(alone[0] - got[row]).max() <= 1e-6


@pytest.mark.slow
def test_a_masked_text_model_exports_for_any_sequence_length(masked_keras_models, no_keras, tmp_path):
    """Embedding(mask_zero) -> Bidirectional(LSTM) -> Bidirectional(GRU): ONNX LSTM/GRU operators, so the
    export answers a padded batch and a row cut to its own length, neither of them the example's shape."""
    import onnxruntime

    x = np.load(masked_keras_models / "masked_bidirectional_inputs.npy")
    model = ember.from_keras(masked_keras_models / "masked_bidirectional.keras")
    model.export(tmp_path, format="onnx", example=torch.from_numpy(x[:2, :-1]))
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"))
    assert session.get_inputs()[0].shape == ["batch", "sequence"]
    expected = np.load(masked_keras_models / "masked_bidirectional_predictions.npy")
    assert np.abs(session.run(None, {session.get_inputs()[0].name: x})[0] - expected).max() <= 1e-5
    row, length = 1, int((x[1] != 0).sum())
    alone = session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(x[row:row + 1, :length])})[0]
    assert np.abs(alone[0] - expected[row]).max() <= 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("extension", [".keras", ".h5"])
def test_an_encoder_hands_its_states_to_a_decoder_as_in_keras(masked_keras_models, no_keras, extension):
    """LSTM(return_state=True) and LSTM(...)(x, initial_state=[h, c]): several outputs per call, state inputs."""
    inputs = np.load(masked_keras_models / "seq2seq_inputs.npz")
    model = ember.from_keras(masked_keras_models / f"seq2seq{extension}").eval()
    with torch.no_grad():
        got = model([torch.from_numpy(inputs["encoder"]), torch.from_numpy(inputs["decoder"])]).numpy()
    assert np.abs(got - np.load(masked_keras_models / "seq2seq_predictions.npy")).max() <= 1e-5
