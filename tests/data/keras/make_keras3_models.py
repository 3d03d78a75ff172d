"""Builds, trains a few steps and saves the Keras 3 models the from_keras tests load.

Usage: KERAS_BACKEND=torch python make_keras3_models.py OUT_DIR
Writes, per model: NAME.keras, NAME.h5, NAME.weights.h5, NAME.legacy.weights.h5 (weights only, as
tf.keras 2 wrote them: Keras 3 writes that layout only through a private function), NAME_inputs.npy
and NAME_predictions.npy (Keras' own predict on the inputs). Needs Keras 3, not TensorFlow.
"""
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")
import h5py  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402
from keras.src.legacy.saving import legacy_h5_format  # noqa: E402


def seed_convnet():
    # The seed's build_convnet, with the Keras 3 Input spelling.
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(32, (3, 3), activation="relu", padding="same"),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), activation="relu", padding="same"),
        layers.MaxPooling2D((2, 2)),
        layers.Dropout(0.25),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dropout(0.25),
        layers.Dense(10, activation="softmax"),
    ])


def resnet_block():
    image = keras.Input((16, 16, 3))
    x = layers.Conv2D(8, 3, padding="same")(image)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    shortcut = x
    x = layers.Conv2D(8, 3, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Add()([x, shortcut])
    x = layers.Activation("relu")(x)
    wide = layers.Concatenate()([x, layers.Conv2D(4, 1)(shortcut)])
    wide = layers.PReLU(keras.initializers.RandomUniform(0.0, 0.5, seed=1), shared_axes=[1, 2])(wide)
    x = layers.GlobalAveragePooling2D()(wide)
    return keras.Model(image, layers.Dense(5, activation="softmax")(x))


def separable():
    image = keras.Input((15, 15, 3))  # odd size: TensorFlow pads strided "same" asymmetrically
    x = layers.Conv2D(8, 3, strides=2, padding="same", activation="gelu")(image)
    x = layers.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2, activation="relu6")(x)
    x = layers.SeparableConv2D(12, 3, padding="same", activation="swish")(x)
    x = layers.BatchNormalization()(x)
    x = layers.LeakyReLU(0.1)(x)
    x = layers.AveragePooling2D(2, padding="same")(x)
    x = layers.GlobalMaxPooling2D()(x)
    x = layers.LayerNormalization()(x)
    x = layers.ELU(0.5)(x)
    return keras.Model(image, layers.Dense(4, activation="log_softmax")(x))


def text():
    tokens = keras.Input((12,), dtype="int32")
    x = layers.Embedding(50, 8)(tokens)
    x = layers.LSTM(16, return_sequences=True)(x)
    x = layers.GRU(12, return_sequences=True, go_backwards=True)(x)
    x = layers.Conv1D(6, 3, padding="same", activation="elu")(x)
    x = layers.Conv1D(5, 3, padding="causal", dilation_rate=2)(x)
    x = layers.GlobalAveragePooling1D()(x)
    return keras.Model(tokens, layers.Dense(3, activation="softmax")(x))


def nested():
    # Models called as layers (as ConvNeXt's blocks): a Sequential, and a functional one holding
    # a Sequential, called twice (shared weights).
    block = keras.Sequential([layers.Conv2D(6, 3, padding="same"), layers.BatchNormalization(), layers.ReLU()],
                             name="conv_block")
    depthwise = keras.Sequential([layers.DepthwiseConv2D(3, padding="same")], name="depthwise_block")
    features = keras.Input((8, 8, 6))
    residual = keras.Model(features, layers.Add()([layers.Conv2D(6, 1)(features), depthwise(features)]) * 0.5,
                           name="residual_block")
    image = keras.Input((8, 8, 3))
    x = residual(residual(block(image)))
    x = keras.Sequential([layers.Dense(4)], name="dense_block")(x)  # no Input: built by its first call
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(image, layers.Dense(5, activation="softmax")(x))


@keras.saving.register_keras_serializable(package="my")
class Scale(layers.Layer):  # custom layers: the file names them, a user gives ember torch stand-ins
    def call(self, x):
        return x * 2


@keras.saving.register_keras_serializable(package="my")
class Pair(layers.Layer):
    def call(self, pair):
        return pair[0] + pair[1]


def custom():
    features = keras.Input((6,))
    x = layers.Dense(4)(features)
    return keras.Model(features, layers.Dense(3, activation="softmax")(Pair()([Scale()(x), x])))


def operations():
    # Python arithmetic and keras.ops calls, which Keras 3 saves as operations in the graph.
    image = keras.Input((8, 8, 3))
    x = layers.Conv2D(6, 3, padding="same")(image)
    x = layers.BatchNormalization()(x)
    x = x * keras.ops.relu6(x + 3) / 6  # MobileNetV3's hard-swish
    squeeze = keras.ops.mean(x, axis=(1, 2), keepdims=True)
    x = x * keras.ops.sigmoid(squeeze)  # broadcast over height and width
    x = 2 - x * 0.5
    x = layers.GlobalAveragePooling2D()(x)
    x = keras.ops.concatenate([x, keras.ops.square(x[:, :2])], axis=-1)
    return keras.Model(image, layers.Dense(5, activation="softmax")(x))


def resampling():
    # The layers keras.applications add around convolutions: padding, cropping, upsampling, preprocessing
    # inside the model, per-sample dropout and squeeze-and-excitation's broadcasting multiply.
    image = keras.Input((9, 10, 3))
    adapted = layers.Normalization(axis=(1, 3))  # a mean per row and channel: (9, 3) arrays in the file
    adapted.adapt(np.random.default_rng(1).uniform(0, 255, (32, 9, 10, 3)).astype("float32"))
    x = layers.Rescaling([1 / 127.5, 1 / 100, 1 / 50], offset=-1.0)(adapted(image))
    x = layers.Normalization(mean=[0.1, -0.2, 0.3], variance=[0.5, 2.0, 1.5])(x)
    x = layers.ZeroPadding2D(((0, 1), (2, 1)))(x)
    x = layers.Conv2D(6, 3, strides=2)(x)
    squeeze = layers.Reshape((1, 1, 6))(layers.GlobalAveragePooling2D()(x))
    x = layers.Multiply()([x, layers.Dense(6, activation="sigmoid")(squeeze)])
    x = layers.Dropout(0.3, noise_shape=(None, 1, 1, 1))(x)
    x = layers.UpSampling2D((2, 3), interpolation="bilinear")(x)
    x = layers.Cropping2D(((1, 0), (2, 3)))(x)
    x = layers.UpSampling2D(2)(layers.Conv2D(4, 3, activation="relu")(x))
    x = layers.CenterCrop(7, 9)(layers.Resizing(8, 11, crop_to_aspect_ratio=True)(x))
    return keras.Model(image, layers.Dense(3, activation="softmax")(layers.Flatten()(x)))


def decoder():
    # Upsampling by transposed convolutions, with normalization and noise layers between them.
    code = keras.Input((5, 6, 4))
    x = layers.Conv2DTranspose(8, 3, strides=2, padding="same")(code)
    x = layers.GroupNormalization(4)(x)
    x = layers.SpatialDropout2D(0.2)(layers.GaussianNoise(0.1)(x))
    x = layers.Conv2DTranspose(6, (3, 2), strides=(2, 3), output_padding=(1, 0), activation="relu")(x)
    x = layers.UnitNormalization()(layers.GaussianDropout(0.1)(x))
    x = layers.Conv2D(2, 3, padding="same")(x)
    return keras.Model(code, layers.Dense(3, activation="softmax")(layers.GlobalAveragePooling2D()(x)))


def sequence():
    # The one-dimensional padding, cropping, upsampling, transposed convolution and spatial dropout.
    steps = keras.Input((12, 4))
    x = layers.Conv1DTranspose(6, 3, strides=2, padding="same")(layers.ZeroPadding1D((1, 2))(steps))
    x = layers.Cropping1D((2, 1))(layers.UpSampling1D(3)(x))
    x = layers.Conv1D(5, 3, activation="relu")(layers.SpatialDropout1D(0.2)(x))
    return keras.Model(steps, layers.Dense(3, activation="softmax")(layers.GlobalAveragePooling1D()(x)))


def video():
    # A layer per frame (TimeDistributed), then a recurrent layer over the frames.
    frames = keras.Input((4, 8, 8, 3))
    x = layers.TimeDistributed(layers.Conv2D(4, 3, activation="relu"))(frames)
    x = layers.TimeDistributed(layers.MaxPooling2D())(x)
    x = layers.TimeDistributed(layers.Flatten())(x)
    return keras.Model(frames, layers.Dense(3, activation="softmax")(layers.LSTM(6)(x)))


def volume():
    # 3D convolutions, pooling, padding, cropping and up-sampling, as on medical volumes (D, H, W, C).
    cube = keras.Input((6, 7, 8, 2))
    x = layers.Conv3D(4, 3, strides=2, padding="same", activation="relu")(cube)
    x = layers.ZeroPadding3D(((1, 0), (0, 1), 1))(x)
    x = layers.Conv3DTranspose(3, 2, strides=2, padding="same")(x)
    x = layers.Cropping3D(((1, 1), (0, 2), 1))(x)
    x = layers.AveragePooling3D(2, padding="same")(x)
    x = layers.UpSampling3D((1, 2, 1))(x)
    x = layers.SpatialDropout3D(0.2)(x)
    x = layers.MaxPooling3D((1, 2, 2), padding="same")(x)
    x = layers.Concatenate()([layers.GlobalAveragePooling3D()(x), layers.GlobalMaxPooling3D()(x),
                              layers.Flatten()(layers.Conv3D(2, (1, 3, 2))(x))])
    return keras.Model(cube, layers.Dense(3, activation="softmax")(x))


def next_frames():
    # Keras' next-frame prediction example, smaller: ConvLSTM2D layers over frames, then a Conv3D.
    frames = keras.Input((5, 8, 8, 1))
    x = layers.ConvLSTM2D(4, (3, 3), padding="same", return_sequences=True, activation="relu")(frames)
    x = layers.BatchNormalization()(x)
    x = layers.ConvLSTM2D(3, (2, 2), padding="same", return_sequences=True, go_backwards=True)(x)
    x = layers.Conv3D(1, (3, 3, 3), activation="sigmoid", padding="same")(x)
    x = layers.ConvLSTM1D(2, 3, strides=2)(layers.Reshape((5, 64, 1))(x))
    return keras.Model(frames, layers.Dense(3, activation="softmax")(layers.Flatten()(x)))


def attention():
    # A transformer block: causal self-attention with a residual merge, then attention with its own
    # value size, output size and gate, RMS-normalized, then projections written as einsums.
    steps = keras.Input((10, 6))
    x = layers.Dense(8)(steps)
    x = layers.LayerNormalization()(layers.Add()([x, layers.MultiHeadAttention(2, 4)(x, x, use_causal_mask=True)]))
    x = layers.MultiHeadAttention(3, 2, value_dim=5, output_shape=7, use_gate=True)(x, steps)
    x = layers.RMSNormalization()(x)
    x = layers.EinsumDense("abc,cde->abde", (None, 2, 4), bias_axes="e", activation="gelu")(x)  # two heads
    x = layers.EinsumDense("...de,de->...e", 4, bias_axes="e")(x)
    return keras.Model(steps, layers.Dense(3, activation="softmax")(layers.GlobalAveragePooling1D()(x)))


def repeated():
    # An LSTM encoder repeated for a decoder, with the identity-at-inference layers and a similarity by Dot.
    steps = keras.Input((6, 3))
    x = layers.RepeatVector(3)(layers.AlphaDropout(0.1)(layers.Identity()(layers.LSTM(4)(steps))))
    x = layers.LSTM(4, return_sequences=True)(x)
    x = layers.Dot(axes=(2, 2), normalize=True)([x, layers.Dense(4)(x)])
    return keras.Model(steps, layers.Dense(3, activation="softmax")(layers.Flatten()(x)))


MODELS = {"seed_convnet": (seed_convnet, (28, 28, 1), 10), "resnet_block": (resnet_block, (16, 16, 3), 5),
          "separable": (separable, (15, 15, 3), 4), "text": (text, "tokens", 3),
          "operations": (operations, (8, 8, 3), 5), "custom": (custom, (6,), 3),
          "nested": (nested, (8, 8, 3), 5),
          "resampling": (resampling, (9, 10, 3), 3), "decoder": (decoder, (5, 6, 4), 3),
          "sequence": (sequence, (12, 4), 3), "video": (video, (4, 8, 8, 3), 3),
          "volume": (volume, (6, 7, 8, 2), 3), "next_frames": (next_frames, (5, 8, 8, 1), 3),
          "attention": (attention, (10, 6), 3), "repeated": (repeated, (6, 3), 3)}


def main(out):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    for name, (build, shape, classes) in MODELS.items():
        model = build()
        loss = "sparse_categorical_crossentropy" if name != "separable" else \
            keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        model.compile("adam", loss)
        if shape == "tokens":
            x = rng.integers(0, 50, (64, 12)).astype("int32")
        else:
            x = rng.standard_normal((64,) + shape).astype("float32")
        model.fit(x, rng.integers(0, classes, 64), epochs=1, batch_size=16, verbose=0)  # 4 steps
        model.save(out / f"{name}.keras")
        model.save(out / f"{name}.h5")
        model.save_weights(out / f"{name}.weights.h5")
        with h5py.File(out / f"{name}.legacy.weights.h5", "w") as legacy:  # tf.keras 2's weights-only layout
            legacy_h5_format.save_weights_to_hdf5_group(legacy, model)
        np.save(out / f"{name}_inputs.npy", x[:8])
        np.save(out / f"{name}_predictions.npy", model.predict(x[:8], verbose=0))
    batch_norm_step(out, rng)
    frozen_base_step(out, rng)
    regularized_step(out, rng)


def batch_norm_step(out, rng):
    """A trained net with BatchNormalization (images and features) saved as batch_norm_step.keras,
    then one train_on_batch of 4 samples at learning rate 0: only the moving statistics move, by
    Keras' own update, saved as batch_norm_step_moving.npz ("<layer>/moving_mean", ...)."""
    model = keras.Sequential([keras.Input((6, 6, 3)), layers.Conv2D(4, 3), layers.BatchNormalization(momentum=0.9),
                              layers.ReLU(), layers.Flatten(), layers.Dense(5), layers.BatchNormalization()])
    model.compile("adam", "mse")
    model.fit(rng.standard_normal((32, 6, 6, 3)), rng.standard_normal((32, 5)), epochs=1, batch_size=8, verbose=0)
    model.save(out / "batch_norm_step.keras")
    _one_sgd_step(model, out / "batch_norm_step", rng, (4, 6, 6, 3), 5, learning_rate=0.0)
    np.savez(out / "batch_norm_step_moving.npz", **{
        f"{layer.name}/{kind}": keras.ops.convert_to_numpy(getattr(layer, kind)) for layer in model.layers
        if isinstance(layer, layers.BatchNormalization) for kind in ("moving_mean", "moving_variance")})


def frozen_base_step(out, rng):
    """Keras' transfer-learning recipe: a base model with `trainable = False` called with training=False,
    a frozen BatchNormalization, trainable layers on top. Saved as frozen_base.keras / .h5 before one
    SGD step (learning rate 0.1) on frozen_base_inputs.npy / _targets.npy; frozen_base_after.npy holds
    Keras' predict after that step."""
    base = keras.Sequential([keras.Input((8, 8, 3)), layers.Conv2D(4, 3), layers.BatchNormalization(),
                             layers.ReLU()], name="base")
    images = keras.Input((8, 8, 3))
    x = layers.GlobalAveragePooling2D()(base(images, training=False))
    x = layers.BatchNormalization(name="frozen_norm")(x)
    x = layers.BatchNormalization(name="trained_norm")(layers.Dense(6)(x))
    model = keras.Model(images, layers.Dense(2)(x))
    for variable in model.weights:  # statistics and biases away from their defaults, so each one shows
        variable.assign(rng.normal(0, 0.5, variable.shape).astype("float32") + ("variance" in variable.path))
    base.trainable = False
    model.get_layer("frozen_norm").trainable = False
    model.save(out / "frozen_base.keras")
    model.save(out / "frozen_base.h5")
    x = _one_sgd_step(model, out / "frozen_base", rng, (8, 8, 8, 3), 2, learning_rate=0.1)
    np.save(out / "frozen_base_after.npy", model.predict(x, verbose=0))


def regularized_step(out, rng):
    """Weight and activity regularizers (L1, L2, L1L2, by class and by string), saved as regularized.keras /
    .h5 before one SGD step (learning rate 0.1); regularized_after.npy holds Keras' predict after it and
    regularized_loss.npy the loss train_on_batch reported (the penalties included)."""
    images = keras.Input((6, 6, 3))
    x = layers.Conv2D(4, 3, kernel_regularizer=keras.regularizers.L2(0.01), bias_regularizer="l1",
                      activity_regularizer=keras.regularizers.L1(0.001))(images)
    x = layers.BatchNormalization(gamma_regularizer=keras.regularizers.L1L2(0.001, 0.002))(x)
    x = layers.LSTM(3, bias_regularizer="l2", kernel_regularizer="l2",
                    recurrent_regularizer=keras.regularizers.L1(0.01))(layers.Reshape((16, 4))(x))
    model = keras.Model(images, layers.Dense(2, kernel_regularizer=keras.regularizers.L1L2(0.001, 0.001),
                                             activity_regularizer=keras.regularizers.L2(0.003))(x))
    for variable in model.weights:
        variable.assign(rng.normal(0, 0.5, variable.shape).astype("float32") + ("variance" in variable.path))
    model.save(out / "regularized.keras")
    model.save(out / "regularized.h5")
    x, y = rng.standard_normal((8, 6, 6, 3)).astype("float32"), rng.standard_normal((8, 2)).astype("float32")
    model.compile(keras.optimizers.SGD(learning_rate=0.1), "mse")
    loss = model.train_on_batch(x, y)
    np.save(out / "regularized_inputs.npy", x)
    np.save(out / "regularized_targets.npy", y)
    np.save(out / "regularized_loss.npy", np.float32(loss))
    np.save(out / "regularized_after.npy", model.predict(x, verbose=0))


def _one_sgd_step(model, prefix, rng, shape, outputs, learning_rate):
    """One train_on_batch (SGD, mse) on random data, saved as PREFIX_inputs.npy and PREFIX_targets.npy."""
    x, y = rng.standard_normal(shape).astype("float32"), rng.standard_normal((shape[0], outputs)).astype("float32")
    model.compile(keras.optimizers.SGD(learning_rate=learning_rate), "mse")
    model.train_on_batch(x, y)
    np.save(f"{prefix}_inputs.npy", x)
    np.save(f"{prefix}_targets.npy", y)
    return x


if __name__ == "__main__":
    main(sys.argv[1])
