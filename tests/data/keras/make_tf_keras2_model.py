"""Generates tf_keras2_convnet.h5 and its reference predictions with genuine tf.keras 2.

Run once, in a throwaway environment (TensorFlow is not an ember dependency):
    python -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu tf_keras
    /tmp/tfenv/bin/python tests/data/keras/make_tf_keras2_model.py
The model mixes what legacy files hold: `batch_input_shape`, `kernel:0` weight names,
BatchNormalization statistics after training, a strided "same" convolution, a GRU with
reset_after, and tf.keras 2's hard_sigmoid.
"""
import os
from pathlib import Path

os.environ["TF_USE_LEGACY_KERAS"] = "1"
import numpy as np  # noqa: E402
import tf_keras as keras  # noqa: E402
from tf_keras import layers  # noqa: E402

HERE = Path(__file__).parent
rng = np.random.default_rng(0)
keras.utils.set_random_seed(0)

image = keras.Input(shape=(12, 12, 3), name="image")
x = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(image)
x = layers.BatchNormalization()(x)
x = layers.DepthwiseConv2D(3, padding="same", activation="hard_sigmoid")(x)
shortcut = x
x = layers.SeparableConv2D(8, 3, padding="same")(x)
x = layers.Add()([x, shortcut])
x = layers.MaxPooling2D()(x)
x = layers.Flatten()(x)
x = layers.Dense(16, activation="swish")(x)
x = layers.Reshape((4, 4))(x)
x = layers.GRU(6)(x)
outputs = layers.Dense(3, activation="softmax")(x)
model = keras.Model(image, outputs)
model.compile("adam", "sparse_categorical_crossentropy")
x_train = rng.standard_normal((64, 12, 12, 3)).astype("float32")
model.fit(x_train, rng.integers(0, 3, 64), epochs=2, batch_size=16, verbose=0)

inputs = rng.standard_normal((5, 12, 12, 3)).astype("float32")
model.save(HERE / "tf_keras2_convnet.h5")
np.save(HERE / "tf_keras2_convnet_inputs.npy", inputs)
np.save(HERE / "tf_keras2_convnet_predictions.npy", model.predict(inputs, verbose=0))
print("keras", keras.__version__)
