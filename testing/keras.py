"""Keras files for tests: small ones written by hand (no Keras needed), real ones saved by
Keras 3 in a subprocess (KERAS_BACKEND=torch, no TensorFlow), and the peak memory of a call."""
import io
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np


def layer(class_name, name, **config):
    """One entry of a Keras 3 config's `layers`."""
    return {"module": "keras.layers", "class_name": class_name, "config": {"name": name, **config},
            "registered_name": None}


INPUT = layer("InputLayer", "input_layer", batch_shape=[None, 4])
DENSE = layer("Dense", "dense", units=3)
KERNEL, BIAS = np.arange(12, dtype="float32").reshape(4, 3), np.ones(3, dtype="float32")


def sequential_config(layers):
    return {"class_name": "Sequential", "config": {"name": "sequential", "layers": layers}}


def h5_bytes(fill) -> bytes:
    """The bytes of an in-memory HDF5 file after `fill(h5)` wrote into it."""
    import h5py

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        fill(h5)
    return buffer.getvalue()


def keras3_weights(weights) -> bytes:
    """A Keras 3 `model.weights.h5`: {group: (layer name, [arrays])} under `layers/<group>/vars/<i>`."""
    def fill(h5):
        for group, (name, arrays) in weights.items():
            vars_group = h5.create_group(f"layers/{group}/vars")
            vars_group.attrs["name"] = name
            for i, array in enumerate(arrays):
                vars_group[str(i)] = array
    return h5_bytes(fill)


def write_keras(path, config, weights_h5: bytes, *, metadata=None, compression=zipfile.ZIP_STORED,
                extra_members=()):
    """A `.keras` zip as Keras writes it (stored members), or with another `compression`.
    `config` (and `metadata`) may be a dict or raw bytes; `extra_members` are (name, bytes) added last."""
    metadata = {"keras_version": "3.15.1"} if metadata is None else metadata
    members = [("metadata.json", metadata), ("config.json", config), ("model.weights.h5", weights_h5),
               *extra_members]
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, content in members:
            archive.writestr(name, content if isinstance(content, bytes) else json.dumps(content))
    return Path(path)


def write_dense_keras(path, **kwargs):
    """Input(4) -> Dense(3) with KERNEL and BIAS: the smallest real model."""
    return write_keras(path, sequential_config([INPUT, DENSE]), keras3_weights({"dense": ("dense", [KERNEL, BIAS])}),
                       **kwargs)


# --- real Keras files ---------------------------------------------------------------------------
KERAS_SEEDS_SCRIPT = r'''
import sys
from pathlib import Path
import keras
from keras import layers
out = Path(sys.argv[1])
keras.utils.set_random_seed(0)
convnet = keras.Sequential([keras.Input((8, 8, 1)), layers.Conv2D(2, 3, activation="relu"),
                            layers.MaxPooling2D(2), layers.Flatten(), layers.Dense(3, activation="softmax")])
image = keras.Input((6, 6, 2))
x = layers.Conv2D(2, 3, padding="same")(image)
x = layers.BatchNormalization()(x)
x = layers.Add()([x, image])
x = layers.GlobalAveragePooling2D()(x)
functional = keras.Model(image, layers.Dense(2)(x))
tokens = keras.Input((5,), dtype="int32")
t = layers.Embedding(7, 3)(tokens)
t = layers.GRU(2)(layers.LSTM(2, return_sequences=True)(t))
text = keras.Model(tokens, layers.Dense(2)(t))
picture = keras.Input((6, 6, 2))
p = layers.Normalization(mean=[1.0, 2.0], variance=[4.0, 9.0])(layers.Rescaling(0.5, offset=-1.0)(picture))
p = layers.Conv2DTranspose(3, 3, strides=2, padding="same")(layers.ZeroPadding2D(((0, 1), (1, 0)))(p))
p = layers.GroupNormalization(3)(layers.Cropping2D(1)(layers.UpSampling2D(2, interpolation="bilinear")(p)))
p = layers.Multiply()([p, layers.Reshape((1, 1, 3))(layers.GlobalAveragePooling2D()(p))])
p = layers.Dropout(0.2, noise_shape=(None, 1, 1, 1))(p)
resampling = keras.Model(picture, layers.Dense(2)(layers.GlobalAveragePooling2D()(p)))
for name, model in {"convnet": convnet, "functional": functional, "text": text, "resampling": resampling}.items():
    model.save(out / f"{name}.keras")
    model.save(out / f"{name}.h5")
    model.save_weights(out / f"{name}.weights.h5")
'''


def save_keras_models(folder) -> Path:
    """Small models saved by Keras 3 itself in `folder`: convnet (Sequential), functional
    (BatchNormalization, Add), text (Embedding, LSTM, GRU) and resampling (padding, transposed
    convolution, upsampling, preprocessing, broadcasting Multiply), each as NAME.keras, NAME.h5
    (legacy) and NAME.weights.h5. Takes about 10 s (importing Keras)."""
    folder = Path(folder)
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    subprocess.run([sys.executable, "-c", KERAS_SEEDS_SCRIPT, str(folder)], check=True, env=env,
                   capture_output=True, timeout=300)
    return folder


# --- memory ---------------------------------------------------------------------------------------
def resident_kib(field="VmRSS") -> int:
    """This process's resident memory (VmRSS) or its peak since the last reset (VmHWM), in KiB."""
    with open("/proc/self/status") as status:
        return int(re.search(rf"{field}:\s+(\d+) kB", status.read()).group(1))


def peak_memory_of(call):
    """(call's result or the exception it raised, the peak resident memory it added in bytes).
    Linux only: the peak (VmHWM) is reset through /proc/self/clear_refs before the call."""
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
    before = resident_kib()
    try:
        outcome = call()
    except Exception as error:  # noqa: BLE001 - the caller judges what was raised
        outcome = error
    return outcome, (resident_kib("VmHWM") - before) * 1024


def keras_tensor(layer_name):
    """A Keras 3 node argument: the output of `layer_name`'s first call."""
    return {"class_name": "__keras_tensor__",
            "config": {"shape": [None, 4], "dtype": "float32", "keras_history": [layer_name, 0, 0]}}


def functional_dense_config():
    """Input(4) -> Dense(3) as a Keras 3 functional model: the graph spelled out in nodes."""
    dense = dict(DENSE, name="dense", inbound_nodes=[{"args": [keras_tensor("input_layer")], "kwargs": {}}])
    return {"class_name": "Functional", "config": {
        "name": "functional", "layers": [dict(INPUT, name="input_layer", inbound_nodes=[]), dense],
        "input_layers": [["input_layer", 0, 0]], "output_layers": [["dense", 0, 0]]}}
