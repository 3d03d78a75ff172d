""".keras zips: members are inflated only within what the archive can account for."""
import json
import struct
import zipfile
import zlib

import pytest
import torch

from ember.saving import ModelFileError
from ember.keras import from_keras
from ember.keras.files import is_keras_file, read_keras_file
from testing.keras import (BIAS, DENSE, INPUT, KERNEL, keras3_weights, peak_memory_of, sequential_config,
                           write_dense_keras, write_keras)


def _zeros_bomb(path, inflated):
    """A .keras whose weights member is `inflated` bytes of zeros, deflated (about 1000:1)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", "{}")
        with archive.open("model.weights.h5", "w", force_zip64=True) as member:
            chunk = bytes(1 << 20)
            for _ in range(inflated // len(chunk)):
                member.write(chunk)
    return path


def test_a_zip_bomb_is_refused_before_it_inflates(tmp_path):
    path = _zeros_bomb(tmp_path / "bomb.keras", 256 << 20)
    assert path.stat().st_size < 1 << 20
    outcome, peak = peak_memory_of(lambda: read_keras_file(path))
    assert isinstance(outcome, ModelFileError), outcome
    assert str(outcome).startswith(f"{path}: model.weights.h5 declares 268435456 bytes from ")
    assert str(outcome).endswith("compressed bytes, more than 50x: refused as a zip bomb")
    assert peak < 16 << 20  # the 256 MiB were never inflated (before: read whole, about twice that)


def test_deflated_keras_files_still_load(tmp_path):
    """Keras writes stored members; a .keras re-zipped with deflate is read too."""
    path = write_dense_keras(tmp_path / "m.keras", compression=zipfile.ZIP_DEFLATED)
    assert {info.compress_type for info in zipfile.ZipFile(path).infolist()} == {zipfile.ZIP_DEFLATED}
    x = torch.ones(2, 4)
    assert torch.allclose(from_keras(path)(x), x @ torch.from_numpy(KERNEL) + 1)


def sequential_config_bytes():
    return json.dumps(sequential_config([INPUT, DENSE])).encode()


def test_a_well_compressed_member_within_the_ratio_is_read(tmp_path):
    padding = b" " * (800 << 10)  # JSON whitespace: deflates about 1000:1, but is within the small-member allowance
    config = padding + sequential_config_bytes()
    path = write_keras(tmp_path / "m.keras", config, keras3_weights({"dense": ("dense", [KERNEL, BIAS])}),
                       compression=zipfile.ZIP_DEFLATED)
    assert read_keras_file(path).config["class_name"] == "Sequential"


def test_a_member_twice_is_refused(tmp_path):
    """zipfile reads the last copy, other readers the first: which config would be loaded is ambiguous."""
    other = sequential_config([INPUT, dict(DENSE, config={"name": "dense", "units": 30})])
    with pytest.warns(UserWarning, match="Duplicate name: 'config.json'"):
        path = write_dense_keras(tmp_path / "m.keras", extra_members=[("config.json", json.dumps(other).encode())])
    with pytest.raises(ModelFileError, match="contains config.json twice"):
        read_keras_file(path)


HEADER_FIELDS = {"flags": (6, 8), "method": (8, 10), "file_size": (22, 24)}  # (local, central) offsets, 16/32 bit


def _patch_headers(path, name, **fields):
    """Set header fields of member `name` in both its local header and its central directory entry."""
    data = bytearray(path.read_bytes())
    info = zipfile.ZipFile(path).getinfo(name)
    central = data.index(b"PK\x01\x02")
    while data[central + 46:central + 46 + len(name)] != name.encode():
        name_length, extra, comment = struct.unpack_from("<HHH", data, central + 28)
        central = data.index(b"PK\x01\x02", central + 46 + name_length + extra + comment)
    for field, value in fields.items():
        local_at, central_at = HEADER_FIELDS[field]
        fmt = "<I" if field == "file_size" else "<H"
        struct.pack_into(fmt, data, info.header_offset + local_at, value)
        struct.pack_into(fmt, data, central + central_at, value)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("fields, message", [
    ({"file_size": 2**31}, "stored .not compressed. but declares 2147483648 bytes"),
    ({"method": 14}, "compressed with zip method 14"),
    ({"flags": 1}, "encrypted"),
])
def test_member_headers_that_cannot_be_right_are_refused(tmp_path, fields, message):
    path = _patch_headers(write_dense_keras(tmp_path / "m.keras"), "config.json", **fields)
    with pytest.raises(ModelFileError, match=message):
        read_keras_file(path)


def test_a_member_shorter_than_declared_is_corrupt(tmp_path):
    path = tmp_path / "m.keras"
    with zipfile.ZipFile(write_dense_keras(tmp_path / "ok.keras")) as source, \
            zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info))
    data = bytearray(path.read_bytes())
    info = zipfile.ZipFile(path).getinfo("model.weights.h5")
    start = info.header_offset + 30 + len(info.filename)
    data[start:start + info.compress_size] = zlib.compress(b"short", 9)[2:-4].ljust(info.compress_size, b"\0")
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="corrupt or truncated"):
        read_keras_file(path)


def test_is_keras_file_never_raises_on_a_damaged_zip(tmp_path):
    path = write_dense_keras(tmp_path / "m.keras")
    data = bytearray(path.read_bytes())
    struct.pack_into("<H", data, data.index(b"PK\x01\x02") + 6, 106)  # "needs zip version 10.6"
    path.write_bytes(bytes(data))
    assert is_keras_file(path) is False
    with pytest.raises(ModelFileError, match="corrupt or truncated .NotImplementedError: zip file version 10.6"):
        read_keras_file(path)


def test_a_directory_is_not_a_keras_file(tmp_path):
    (tmp_path / "unzipped.keras").mkdir()  # Keras' save(..., zipped=False) writes a folder
    assert is_keras_file(tmp_path / "unzipped.keras") is False
    with pytest.raises(ModelFileError, match="is a directory"):
        read_keras_file(tmp_path / "unzipped.keras")
    with pytest.raises(FileNotFoundError, match="no such Keras file"):
        read_keras_file(tmp_path / "missing.keras")
