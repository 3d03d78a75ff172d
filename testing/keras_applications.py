"""keras.applications models saved by Keras 3 (torch backend, no TensorFlow) with random weights, and
their conversion by ember in a process where `import keras` fails. Shared by
tests/test_keras_applications.py and benchmarks/keras_applications.py."""
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

# The input sizes Keras refuses to build these for below; every other application builds at 32.
MIN_SIZES = {"Xception": 71, "InceptionV3": 75, "InceptionResNetV2": 75}
# Every file kind a check can convert: `.weights.h5` is Keras 3's save_weights, `.legacy.weights.h5` the
# tf.keras 2 layout (Keras 3 writes it only through keras.src.legacy); both go into the architecture
# ember converted from the `.keras` file, through ember.load_keras_weights.
FILE_KINDS = (".keras", ".h5", ".weights.h5", ".legacy.weights.h5")
CHECK_SCRIPT = Path(__file__).with_name("check_converted_application.py")


@dataclass(frozen=True)
class Application:
    """One keras.applications model as built: `name` (ResNet50...), input size, its top or a pooling."""

    name: str
    size: int = 0  # 0: the smallest Keras builds the model for
    include_top: bool = True
    pooling: str | None = None  # without the top: None (the feature map) or "avg" / "max"

    def __post_init__(self):
        if not self.size:
            object.__setattr__(self, "size", MIN_SIZES.get(self.name, 32))

    @property
    def key(self) -> str:
        """The stem of the files saved for it: ResNet50, ResNet50_notop, ResNet50_notop_avg."""
        return self.name if self.include_top else f"{self.name}_notop" + (f"_{self.pooling}" if self.pooling else "")


SAVE_SCRIPT = r'''
import gc, json, sys
from pathlib import Path
import h5py, numpy as np
import keras
from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group
out, applications = Path(sys.argv[1]), json.loads(sys.argv[2])
rng = np.random.default_rng(0)
for application in applications:
    keras.utils.set_random_seed(0)
    size, key = application["size"], application["key"]
    # Logits, not probabilities: a softmax over 1000 classes would hide differences.
    model = getattr(keras.applications, application["name"])(
        weights=None, input_shape=(size, size, 3), include_top=application["include_top"],
        pooling=application["pooling"], classifier_activation=None)
    # Random gammas, betas and biases, then BatchNormalization statistics measured on the images predicted on
    # and more: arrays in the wrong order show, and activations stay near 1. (With statistics drawn at random
    # they grow to thousands in EfficientNetV2S, whose sigmoid gates then differ by 20% between float32 and
    # float64; with the batch's own they differ by 8e-4: a test of rounding, not of the conversion.)
    normalizations = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in model.layers:
        for variable in layer.weights:
            if variable.name == "gamma" and layer in normalizations:  # by name: scale=False has no gamma
                variable.assign(rng.uniform(0.5, 1.5, variable.shape))
            elif variable.name in ("beta", "bias"):
                variable.assign(rng.normal(0, 0.2, variable.shape))
    calibration = rng.uniform(0, 255, (8, size, size, 3)).astype("float32")
    x = calibration[:2]
    # One training-mode call, with momentum 0 and no dropout, sets the moving statistics to the batch's.
    settings = [(layer, "momentum") for layer in normalizations] + [
        (layer, "rate") for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    saved = [getattr(layer, setting) for layer, setting in settings]
    for layer, setting in settings:
        setattr(layer, setting, 0.0)
    model(calibration, training=True)
    for (layer, setting), value in zip(settings, saved):
        setattr(layer, setting, value)
    for layer in normalizations:  # variances up to twice the batch's: each layer shrinks rounding errors, not grows them
        variance = keras.ops.convert_to_numpy(layer.moving_variance)
        layer.moving_variance.assign(variance * rng.uniform(1.0, 2.0, variance.shape))
    np.save(out / f"{key}_inputs.npy", x)
    np.save(out / f"{key}_predictions.npy", model.predict(x, verbose=0))
    (out / f"{key}_params.json").write_text(json.dumps(model.count_params()))
    model.save(out / f"{key}.keras")
    model.save(out / f"{key}.h5")
    model.save_weights(out / f"{key}.weights.h5")
    with h5py.File(out / f"{key}.legacy.weights.h5", "w") as legacy:
        save_weights_to_hdf5_group(legacy, model)
    del model
    gc.collect()
'''


def save_applications(folder, applications):
    """For each Application: KEY.keras, KEY.h5, KEY.weights.h5, KEY.legacy.weights.h5, KEY_inputs.npy,
    KEY_predictions.npy (Keras' predict) and KEY_params.json in `folder`, written by Keras in a subprocess."""
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    specs = json.dumps([{**asdict(a), "key": a.key} for a in applications])
    result = subprocess.run([sys.executable, "-c", SAVE_SCRIPT, str(folder), specs], env=env, capture_output=True,
                            text=True, timeout=3600)
    if result.returncode:
        raise RuntimeError(f"Keras failed to save {', '.join(a.key for a in applications)}:\n{result.stderr[-3000:]}")
    return Path(folder)


def convert_without_keras(folder, key, file_kinds=FILE_KINDS, data_formats=("channels_last",), checks=()):
    """The report of testing/check_converted_application.py on KEY's files in `folder`, converted by ember in
    a subprocess where `import keras` fails: {"FILE_KIND DATA_FORMAT": {load_seconds, max_abs, max_rel} or
    {error}} and one entry per check ("fit", "onnx", "int8") run on the first model that loaded."""
    unknown = set(file_kinds) - set(FILE_KINDS)
    if unknown:
        raise ValueError(f"file kinds must be among {', '.join(FILE_KINDS)}, got {', '.join(sorted(unknown))}")
    # The script's folder, not the checkout, starts its sys.path: this checkout's ember, not an installed one.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(CHECK_SCRIPT.parents[1]), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, str(CHECK_SCRIPT), str(folder), key, ",".join(file_kinds),
                             ",".join(data_formats), ",".join(checks)], env=env, capture_output=True, text=True,
                            timeout=3600)
    if result.returncode:
        raise RuntimeError(f"checking {key} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])
