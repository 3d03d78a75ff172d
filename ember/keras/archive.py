"""The members of a `.keras` zip, read within sizes the archive can account for.

Keras writes `.keras` files with zipfile's default method, ZIP_STORED
(keras/src/saving/saving_lib.py, `_save_model_to_fileobj`): each member's bytes are in the
archive as they are, so its size equals its compressed size. A `.keras` re-zipped by
another tool may be deflated, and is read too, but a zip header declares whatever its
writer wants: a 1 MiB member can claim to inflate to 1 GiB (deflate reaches about 1032:1).
So before anything is inflated, each member's declared size is checked against its
compressed size and the archive's, and the member is then streamed into a buffer of
exactly that size, never trusting the header for more.
"""
import struct
import zipfile
import zlib
from pathlib import Path

from ember.saving import ModelFileError

# A member may inflate to MAX_INFLATION times its compressed size, plus SMALL_MEMBER bytes.
# Weights compress by 1.1-2x under deflate; JSON configs by 5-20x, rarely beyond 30x; a small
# file (a config.json of a few KiB, an HDF5 header of zeros) may compress further, hence the
# allowance. A bomb needs hundreds of times to be worth building.
MAX_INFLATION = 50
SMALL_MEMBER = 1 << 20
CHUNK = 1 << 20  # bytes inflated per read
METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
# zipfile's errors on a damaged archive; every call into zipfile below is guarded by them.
ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, zlib.error, struct.error, ValueError,
              NotImplementedError, RuntimeError, OverflowError)


def read_members(path: Path, required: tuple, optional: tuple = ()) -> dict:
    """{name: bytes} of the `required` members (all must be present, once) and of those
    `optional` members that are present."""
    archive_size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as archive:
            infos = _members(archive, path, required, optional)
            _check_sizes(infos, archive_size, path)
            return {name: _read(archive, info, path) for name, info in infos.items()}
    except ModelFileError:  # a ValueError too, but already saying what is wrong
        raise
    except ZIP_ERRORS as error:
        raise ModelFileError(f"{path} is corrupt or truncated ({type(error).__name__}: {error}); "
                             "expected a .keras zip written by model.save()") from error


def _members(archive, path, required, optional):
    infos = {}
    for info in archive.infolist():
        if info.filename not in required + optional:
            continue
        if info.filename in infos:
            raise ModelFileError(f"{path} contains {info.filename} twice: a .keras file has one of each member "
                                 "(readers may pick different copies)")
        infos[info.filename] = info
    missing = [name for name in required if name not in infos]
    if missing:
        raise ModelFileError(f"{path} is a zip but not a .keras file: it lacks {', '.join(missing)}")
    return infos


def _check_sizes(infos, archive_size, path):
    for name, info in infos.items():
        where = f"{path}: {name}"
        if info.flag_bits & 0x1:
            raise ModelFileError(f"{where} is encrypted; Keras writes plain members")
        if info.compress_type not in METHODS:
            raise ModelFileError(f"{where} is compressed with zip method {info.compress_type}; expected stored "
                                 "(as Keras writes) or deflated")
        if info.compress_size > archive_size:
            raise ModelFileError(f"{where} declares {info.compress_size} compressed bytes, more than the "
                                 f"{archive_size}-byte archive")
        if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
            raise ModelFileError(f"{where} is stored (not compressed) but declares {info.file_size} bytes for "
                                 f"{info.compress_size} bytes in the archive")
        if info.file_size > _inflation_limit(info.compress_size):
            raise ModelFileError(f"{where} declares {info.file_size} bytes from {info.compress_size} compressed "
                                 f"bytes, more than {MAX_INFLATION}x: refused as a zip bomb")
    total = sum(info.file_size for info in infos.values())
    if total > _inflation_limit(archive_size):
        raise ModelFileError(f"{path}: its members declare {total} bytes in all, more than {MAX_INFLATION}x the "
                             f"{archive_size}-byte archive: refused as a zip bomb")


def _inflation_limit(compressed):
    return MAX_INFLATION * compressed + SMALL_MEMBER


def _read(archive, info, path):
    """The member's bytes, inflated into a buffer of its declared size and no further."""
    data = bytearray(info.file_size)
    view, filled = memoryview(data), 0
    with archive.open(info) as member:
        while filled < info.file_size:
            chunk = member.read(min(CHUNK, info.file_size - filled))
            if not chunk:
                break
            view[filled:filled + len(chunk)] = chunk
            filled += len(chunk)
        if filled != info.file_size or member.read(1):
            raise ModelFileError(f"{path}: {info.filename} holds {'more' if filled == info.file_size else filled} "
                                 f"bytes, its header declares {info.file_size}")
    view.release()
    return bytes(data)
