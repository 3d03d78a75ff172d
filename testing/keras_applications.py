"""keras.applications models saved by Keras 3 (torch backend, no TensorFlow) with random weights, and
their conversion by ember in a process where `import keras` fails. Shared by
tests/test_keras_applications.py and benchmarks/keras_applications.py."""
import json
import os
import subprocess
import sys
from pathlib import Path

SAVE_SCRIPT = r'''
import json, sys
from pathlib import Path
import numpy as np
import keras
out, size, names = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
rng = np.random.default_rng(0)
for name in names:
    keras.utils.set_random_seed(0)
    # Logits, not probabilities: a softmax over 1000 classes would hide differences.
    model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3), classifier_activation=None)
    for layer in model.layers:  # statistics far from 0 and 1, so that arrays in the wrong order show
        if isinstance(layer, keras.layers.BatchNormalization):  # by name: scale=False has no gamma
            for variable in layer.weights:
                positive = variable.name in ("gamma", "moving_variance")
                variable.assign(rng.uniform(0.5, 1.5, variable.shape) if positive
                                else rng.normal(0, 0.2, variable.shape))
    x = rng.uniform(0, 255, (2, size, size, 3)).astype("float32")
    np.save(out / f"{name}_inputs.npy", x)
    np.save(out / f"{name}_predictions.npy", model.predict(x, verbose=0))
    (out / f"{name}_params.json").write_text(json.dumps(model.count_params()))
    model.save(out / f"{name}.keras")
    model.save(out / f"{name}.h5")
'''

CONVERT_SCRIPT = r'''
import json, sys, time
for blocked in ("keras", "tf_keras", "tensorflow"):
    sys.modules[blocked] = None  # ember must convert without Keras
import numpy as np, torch, ember
path, inputs, predictions = sys.argv[1:4]
x, expected = np.load(inputs), np.load(predictions)
scale = float(np.abs(expected).max())
report = {}
for data_format in sys.argv[4:]:
    started = time.perf_counter()
    try:
        model = ember.from_keras(path, data_format=data_format)
    except Exception as error:
        report[data_format] = {"error": f"{type(error).__name__}: {error}"}
        continue
    seconds = time.perf_counter() - started
    batch = torch.from_numpy(x)
    with torch.no_grad():
        got = model.eval()(batch.permute(0, 3, 1, 2) if data_format == "channels_first" else batch).numpy()
    difference = float(np.abs(got - expected).max())
    report[data_format] = {"load_seconds": seconds, "max_abs": difference, "max_rel": difference / scale}
print(json.dumps(report))
'''


def save_applications(folder, names, size=32):
    """For each name of `keras.applications`: NAME.keras, NAME.h5, NAME_inputs.npy, NAME_predictions.npy
    (Keras' predict) and NAME_params.json in `folder`, written by Keras in a subprocess."""
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    subprocess.run([sys.executable, "-c", SAVE_SCRIPT, str(folder), str(size), *names], check=True, env=env,
                   capture_output=True, timeout=1800)
    return Path(folder)


def convert_without_keras(folder, name, extension, data_formats=("channels_last",)):
    """{data_format: {load_seconds, max_abs, max_rel} or {error}} for NAME.EXTENSION in `folder`, converted by
    ember.from_keras in a subprocess where `import keras` fails, against Keras' predictions."""
    folder = Path(folder)
    result = subprocess.run([sys.executable, "-c", CONVERT_SCRIPT, str(folder / f"{name}{extension}"),
                             str(folder / f"{name}_inputs.npy"), str(folder / f"{name}_predictions.npy"),
                             *data_formats], capture_output=True, text=True, timeout=900)
    if result.returncode:
        raise RuntimeError(f"converting {name}{extension} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])
