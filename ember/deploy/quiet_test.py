import os
import warnings

import pytest

from ember.deploy.quiet import converter_output


def test_known_chatter_is_dropped_and_anything_else_kept(capfd):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with converter_output():
            os.write(2, b"[cpuinfo_utils.cpp:71] Reading file /sys/devices/soc0/image_version\n")
            os.write(1, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\nthe converter says something new\n")
            os.write(2, b"W1203 torch/onnx/_registration.py:107] torchvision is not installed. Skipping torchvision::nms\n")
            warnings.warn("No complete tensor found in the group! Returning the first one.", UserWarning)
            warnings.warn("a real warning", RuntimeWarning)
    out, err = capfd.readouterr()
    assert out == "the converter says something new\n" and err == ""
    assert [str(warning.message) for warning in caught] == ["a real warning"]


def test_a_failing_block_shows_everything_it_printed(capfd):
    with pytest.raises(RuntimeError, match="conversion failed"):
        with converter_output():
            os.write(2, b"[cpuinfo_utils.cpp:71] Reading file /sys/devices/soc0/image_version\n")
            raise RuntimeError("conversion failed")
    assert "[cpuinfo_utils.cpp:71]" in capfd.readouterr().err


def test_litert_progress_is_off_only_inside(monkeypatch):
    monkeypatch.delenv("LITERT_TORCH_SHOW_PROGRESS", raising=False)
    with converter_output():
        assert os.environ["LITERT_TORCH_SHOW_PROGRESS"] == "n"
    assert "LITERT_TORCH_SHOW_PROGRESS" not in os.environ
