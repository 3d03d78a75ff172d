import json

import pytest

from ember.serve.config import load_config


def test_defaults_flags_and_per_model_settings(tmp_path):
    path = tmp_path / "serve.json"
    path.write_text(json.dumps({"max_body_bytes": 1000, "batching": {"max_batch_size": 16},
                                "models": {"digits": {"runtime": "torch", "batching": {"batch_timeout_micros": 5},
                                                      "version_labels": {"stable": 2}}}}))
    config = load_config(path, max_batch_size=64, batch_timeout_micros=None)
    assert config.max_body_bytes == 1000
    assert config.defaults.batching.max_batch_size == 64  # the flag wins over the file
    digits = config.for_model("digits")
    assert (digits.runtime, digits.batching.max_batch_size, digits.batching.batch_timeout_micros) == ("torch", 64, 5)
    assert digits.version_labels == {"stable": 2}
    assert config.for_model("other") is config.defaults


@pytest.mark.parametrize("content, message", [
    ({"max_batch": 3}, "unknown setting.*max_batch.*expected"),
    ({"batching": {"timeout": 3}}, "unknown setting.*timeout"),
    ({"models": {"m": {"poll_seconds": 1}}}, "model 'm'.*unknown setting.*poll_seconds"),
    ({"models": {"m": {"version_labels": {"stable": "two"}}}}, "version_labels"),
    ([1, 2], "expected a JSON object"),
])
def test_bad_config_is_named(tmp_path, content, message):
    path = tmp_path / "serve.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=message):
        load_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config(tmp_path / "nope.json")


def test_http_limits_from_the_file_and_flags(tmp_path):
    path = tmp_path / "serve.json"
    path.write_text(json.dumps({"max_header_bytes": 8192, "header_timeout_seconds": 2.5, "max_connections": 50}))
    limits = load_config(path, max_connections=70, body_timeout_seconds=None).http
    assert (limits.max_header_bytes, limits.header_timeout_seconds, limits.body_timeout_seconds,
            limits.max_connections) == (8192, 2.5, 60.0, 70)  # the flag wins; unset ones keep the defaults
    assert load_config(None).http.max_header_bytes == 65536


@pytest.mark.parametrize("content, message", [
    ({"max_connections": 0}, "max_connections must be an integer >= 1, got 0"),
    ({"header_timeout_seconds": "10"}, "header_timeout_seconds must be a number of seconds > 0, got '10'"),
    ({"max_body_bytes": "16M"}, "max_body_bytes must be an integer >= 1, got '16M'"),
])
def test_bad_limits_in_the_file_are_named(tmp_path, content, message):
    path = tmp_path / "serve.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=message):
        load_config(path)
