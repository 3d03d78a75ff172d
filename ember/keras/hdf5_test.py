"""HDF5 inside Keras files points only at itself: external storage, virtual datasets,
external and soft links are refused; declared sizes are checked before anything is allocated."""
import json
import os
import re
import signal
import time
import types
from pathlib import Path

import h5py
import numpy as np
import pytest

import ember
from ember.define import layers as L
from ember.saving import ModelFileError
from ember.keras import from_keras, load_keras_weights
from ember.keras import cli as keras_cli
from ember.keras.files import read_keras_file
from testing.keras import (BIAS, DENSE, INPUT, KERNEL, h5_bytes, keras3_weights, peak_memory_of,
                           sequential_config, write_keras)

SECRET = b"TOP-SECRET-KEY!!" * 3  # 48 bytes: the float32 (4, 3) kernel of the Dense layer


@pytest.fixture
def secret(tmp_path):
    path = tmp_path / "secret.bin"
    path.write_bytes(SECRET)
    return path


def _dense_vars(h5, make_kernel):
    """layers/dense/vars as Keras 3 writes them, the kernel made by `make_kernel(group, name)`."""
    group = h5.create_group("layers/dense/vars")
    group.attrs["name"] = "dense"
    make_kernel(group, "0")
    group["1"] = BIAS


def _keras_with_kernel(path, make_kernel):
    return write_keras(path, sequential_config([INPUT, DENSE]), h5_bytes(lambda h5: _dense_vars(h5, make_kernel)))


def _legacy_h5_with_kernel(path, make_kernel):
    """A legacy (tf.keras 2 layout) .h5 whose Dense kernel is made by `make_kernel(group, name)`."""
    with h5py.File(path, "w") as h5:
        h5.attrs["model_config"] = json.dumps(sequential_config([INPUT, DENSE]))
        h5.attrs["keras_version"] = "2.15.0"
        weights = h5.create_group("model_weights")
        weights.attrs["layer_names"] = [b"dense"]
        group = weights.create_group("dense/dense")
        make_kernel(group, "kernel:0")
        group["bias:0"] = BIAS
        weights["dense"].attrs["weight_names"] = [b"dense/kernel:0", b"dense/bias:0"]
    return path


def _external_storage(secret):
    return lambda group, name: group.create_dataset(name, shape=(4, 3), dtype="float32",
                                                    external=[(str(secret), 0, len(SECRET))])


def _all_parameter_bytes(model):
    return b"".join(t.detach().numpy().tobytes() for t in model.state_dict().values())


@pytest.mark.parametrize("write", [_keras_with_kernel, _legacy_h5_with_kernel], ids=["keras", "h5"])
def test_external_storage_is_refused_before_reading_the_other_file(tmp_path, secret, write):
    path = write(tmp_path / "m.file", _external_storage(secret))
    with pytest.raises(ModelFileError, match=r"dataset /\S+(/0|kernel:0) keeps its bytes in another file"):
        from_keras(path)


def test_external_storage_never_reaches_a_saved_model(tmp_path, secret):
    """`ember convert` used to write the other file's bytes into the .ember model."""
    path = _keras_with_kernel(tmp_path / "m.keras", _external_storage(secret))
    out = tmp_path / "m.ember"
    args = types.SimpleNamespace(source=str(path), out=str(out), data_format="channels_last")
    with pytest.raises(ModelFileError, match="another file"):
        keras_cli.run(args)
    assert not out.exists()


def test_external_storage_in_a_weights_file(tmp_path, secret):
    path = tmp_path / "m.weights.h5"
    path.write_bytes(h5_bytes(lambda h5: _dense_vars(h5, _external_storage(secret))))
    model = ember.Sequential([L.Input((4,)), L.Dense(3)])
    with pytest.raises(ModelFileError, match="another file"):
        load_keras_weights(model, path)
    assert SECRET not in _all_parameter_bytes(model)


def test_virtual_dataset_is_refused(tmp_path):
    source = tmp_path / "other.h5"
    with h5py.File(source, "w") as other:
        other["x"] = np.frombuffer(SECRET, dtype="float32").reshape(4, 3)

    def virtual(group, name):
        layout = h5py.VirtualLayout(shape=(4, 3), dtype="float32")
        layout[:] = h5py.VirtualSource(str(source), "x", shape=(4, 3))
        group.create_virtual_dataset(name, layout)

    with pytest.raises(ModelFileError, match="virtual dataset"):
        from_keras(_keras_with_kernel(tmp_path / "m.keras", virtual))


@pytest.mark.parametrize("link, message", [
    (lambda tmp: h5py.ExternalLink(str(tmp / "other.h5"), "/x"), "external link to '/x' in file"),
    (lambda tmp: h5py.SoftLink("/elsewhere/x"), "SoftLink to '/elsewhere/x'"),
])
def test_links_other_than_hard_links_are_refused(tmp_path, link, message):
    with h5py.File(tmp_path / "other.h5", "w") as other:
        other["x"] = np.frombuffer(SECRET, dtype="float32").reshape(4, 3)

    def linked(group, name):
        group.file["elsewhere/x"] = KERNEL
        group[name] = link(tmp_path)

    for write in (_keras_with_kernel, _legacy_h5_with_kernel):
        with pytest.raises(ModelFileError, match=message):
            from_keras(write(tmp_path / f"m.{write.__name__}", linked))


def test_a_group_linked_to_its_parent_is_refused(tmp_path):
    """A hard-link cycle: walking the weights' groups must end."""
    def cycle(group, name):
        group[name] = KERNEL
        group.parent["loop"] = group.parent  # layers/dense/loop -> layers/dense

    with pytest.raises(ModelFileError, match="reached before"):
        read_keras_file(_keras_with_kernel(tmp_path / "m.keras", cycle))


@pytest.mark.parametrize("write", [_keras_with_kernel, _legacy_h5_with_kernel], ids=["keras", "h5"])
def test_a_dataset_declaring_256_gib_it_does_not_hold_is_refused_without_allocating(tmp_path, write):
    def huge(group, name):  # HDF5 allocates a dataset's storage when it is first written: never, here
        group.create_dataset(name, shape=(2**36,), dtype="float32")

    path = write(tmp_path / "m.file", huge)
    assert path.stat().st_size < 16 * 1024
    outcome, peak = peak_memory_of(lambda: read_keras_file(path))
    assert isinstance(outcome, ModelFileError), outcome
    assert re.search(r"dataset /\S+(/0|kernel:0) declares 274877906944 bytes", str(outcome)), outcome
    assert peak < 32 * 2**20


def test_a_dataset_linked_twice_is_refused(tmp_path):
    """Keras writes each variable once; two names for one dataset would read its bytes twice."""
    path = tmp_path / "m.weights.h5"
    path.write_bytes(keras3_weights({"dense": ("dense", [KERNEL, BIAS])}))
    with h5py.File(path, "r+") as h5:
        h5["layers/dense/vars/2"] = h5["layers/dense/vars/0"]
    with pytest.raises(ModelFileError, match="reached before"):
        read_keras_file(path)


def test_non_numeric_weights_are_refused(tmp_path):
    def strings(group, name):
        group[name] = np.array([b"a", b"b"])

    with pytest.raises(ModelFileError, match=r"kernel.*holds \|S1, expected numbers"):
        from_keras(_legacy_h5_with_kernel(tmp_path / "m.h5", strings))


def test_big_endian_weights_load(tmp_path):
    model = from_keras(_keras_with_kernel(tmp_path / "m.keras", lambda group, name: group.create_dataset(
        name, data=KERNEL.astype(">f4"))))
    np.testing.assert_array_equal(model.state_dict()["layers.0.weight"].numpy(), KERNEL.T)


@pytest.mark.parametrize("value, message", [
    (7, "attribute 'layer_names' of / must be a list of names, found int64"),
    (np.array([[b"dense"]]), "must be a list of names"),
    (np.array([b"\xff\xfe"]), "is not UTF-8 text"),
    (np.array([b"/dense"]), "expected a relative HDF5 path"),
    (np.array([b"missing"]), "/missing is missing"),
])
def test_wrong_layer_names_attribute(tmp_path, value, message):
    path = _legacy_h5_with_kernel(tmp_path / "m.h5", lambda group, name: group.create_dataset(name, data=KERNEL))
    with h5py.File(path, "r+") as h5:
        h5.attrs["layer_names"] = value  # a weights-only legacy file: layer_names at the root
        del h5.attrs["model_config"]
    with pytest.raises(ModelFileError, match=message):
        read_keras_file(path)


def test_weights_of_a_real_keras_file_read_as_before(tmp_path):
    path = write_keras(tmp_path / "m.keras", sequential_config([INPUT, DENSE]),
                       keras3_weights({"dense": ("dense", [KERNEL, BIAS])}))
    weights = read_keras_file(path).weights
    assert list(weights.by_name) == ["dense"] and list(weights.by_path) == ["layers/dense"]
    np.testing.assert_array_equal(weights.by_name["dense"][0], KERNEL)


TF_KERAS2_FILE = Path(__file__).parents[2] / "tests" / "data" / "keras" / "tf_keras2_convnet.h5"


def test_a_string_length_hdf5_would_allocate_4_gib_for_is_refused_within_bounds(tmp_path):
    """libhdf5 allocates (and fills) a variable-length string's declared length before comparing
    it with the heap object: 4 bytes of the tf.keras 2 file set to 0xff, the length of one
    `weight_names` entry, made it take 4 GiB and 8.8 s. It now parses in a child whose address
    space is bounded by the file's size."""
    data = bytearray(TF_KERAS2_FILE.read_bytes())
    data[12808:12812] = b"\xff" * 4
    path = tmp_path / "m.h5"
    path.write_bytes(bytes(data))
    start = time.perf_counter()
    outcome, peak = peak_memory_of(lambda: read_keras_file(path))
    assert isinstance(outcome, ModelFileError), repr(outcome)
    assert "memory allocation failed" in str(outcome) and "batch_normalization" in str(outcome)
    assert peak < 64 * 2**20 and time.perf_counter() - start < 5


def test_a_crash_or_a_hang_of_the_hdf5_library_is_a_model_file_error():
    from ember.keras.isolation import run_forked

    with pytest.raises(ModelFileError, match=r"the HDF5 library crashed \(signal 9\) reading m.h5"):
        run_forked(lambda: os.kill(os.getpid(), signal.SIGKILL), memory=1 << 30, seconds=10, source="m.h5")
    with pytest.raises(ModelFileError, match="reading m.h5 did not finish within 1 s"):
        run_forked(lambda: time.sleep(30), memory=1 << 30, seconds=1, source="m.h5")
    assert run_forked(lambda: {"a": [np.arange(3)]}, memory=1 << 30, seconds=10, source="m.h5")["a"][0].tolist() \
        == [0, 1, 2]
