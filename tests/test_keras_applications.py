"""keras.applications models (random weights, BatchNormalization statistics randomized) saved by Keras 3
as `.keras` and `.h5`, converted by ember.from_keras where `import keras` fails, give Keras' predict.
One model per family runs here; benchmarks/keras_applications.py runs every supported one."""
import pytest

from testing.keras_applications import convert_without_keras, save_applications

ONE_PER_FAMILY = ["ResNet50", "MobileNetV2", "DenseNet121", "EfficientNetB0", "MobileNetV3Small"]
TOLERANCE = 1e-4  # max abs difference relative to the largest output


@pytest.fixture(scope="module")
def applications(tmp_path_factory):
    return save_applications(tmp_path_factory.mktemp("keras_applications"), ONE_PER_FAMILY)


@pytest.mark.slow
@pytest.mark.parametrize("extension", [".keras", ".h5"])
@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_application_matches_keras_predict(applications, name, extension):
    data_formats = ("channels_last", "channels_first") if extension == ".keras" else ("channels_last",)
    report = convert_without_keras(applications, name, extension, data_formats)
    for data_format in data_formats:
        assert "error" not in report[data_format], report[data_format]
        assert report[data_format]["max_rel"] <= TOLERANCE, (data_format, report[data_format])
