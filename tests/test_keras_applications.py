"""keras.applications models (random weights, BatchNormalization statistics measured on the inputs) saved by
Keras 3 as `.keras`, `.h5`, `.weights.h5` and a legacy weights-only `.h5`, converted by ember where
`import keras` fails, give Keras' predict. One model per family runs here, two without their top, one
through fit and ONNX; benchmarks/keras_applications.py runs every one."""
import pytest

from testing.keras_applications import FILE_KINDS, Application, convert_without_keras, save_applications

ONE_PER_FAMILY = [Application(name) for name in
                  ("ResNet50", "MobileNetV2", "DenseNet121", "EfficientNetB0", "MobileNetV3Small")]
WITHOUT_TOP = [Application("MobileNetV3Small", include_top=False),
               Application("EfficientNetB0", include_top=False, pooling="avg")]
TRAINED_AND_EXPORTED = "MobileNetV3Small"
TOLERANCE = 1e-4  # max abs difference relative to the largest output
ONNX_TOLERANCE = 1e-4  # max abs difference from the converted model; outputs are of order 1


@pytest.fixture(scope="module")
def applications(tmp_path_factory):
    return save_applications(tmp_path_factory.mktemp("keras_applications"), ONE_PER_FAMILY + WITHOUT_TOP)


@pytest.mark.slow
@pytest.mark.parametrize("application", ONE_PER_FAMILY + WITHOUT_TOP, ids=lambda application: application.key)
def test_application_matches_keras_predict(applications, application):
    checks = ("fit", "onnx") if application.key == TRAINED_AND_EXPORTED else ()
    report = convert_without_keras(applications, application.key, FILE_KINDS, ("channels_last", "channels_first"),
                                   checks)
    for kind in FILE_KINDS:
        for data_format in ("channels_last", "channels_first"):
            result = report[f"{kind} {data_format}"]
            assert "error" not in result, (kind, data_format, result)
            assert result["max_rel"] <= TOLERANCE, (kind, data_format, result)
    if checks:
        assert report["fit"]["finite"], report["fit"]
        assert report["onnx"]["max_abs"] <= ONNX_TOLERANCE, report["onnx"]
