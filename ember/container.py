"""ember's file container: a zip, stored (never compressed), of a JSON document and a safetensors blob.

Model files (`ember.saving`) and training backups (`ember.train.checkpoint`) are both
one of these. Every file ember reads may come from someone else, so reading treats it as hostile
(docs/security.md):
- a pickle is refused before anything parses it;
- members must be stored, not compressed, and lie within the file: nothing inflates, so no member
  can make the reader allocate more than the file's own size;
- the member names must be exactly the expected ones (a zip may hold a name twice);
- JSON must be UTF-8 and an object; nesting too deep for the parser is an error, not a crash;
- safetensors checks its own header against the bytes it has (offsets, dtypes, shapes).
zipfile checks each member's CRC-32 while reading, so a damaged file is detected, not loaded.
Every problem is a `FileFormatError` (the caller's subclass) naming the file and what was wrong.
"""
import io
import json
import zipfile

from safetensors.torch import load as load_safetensors

from ember.io import atomic_write

PICKLE_MAGIC = b"\x80"  # pickle protocol 2 and later start with PROTO
# zipfile's many ways of finding a damaged archive
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, NotImplementedError,
               OverflowError)


class FileFormatError(ValueError):
    """A file ember reads is corrupt, truncated, crafted or of another kind. The message names the
    file and what was expected; nothing in the file was run."""


def write_container(path, members: dict) -> None:
    """Write `{member name: bytes}` atomically as a stored zip."""
    with atomic_write(path, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def read_members(path, data: bytes, expected: set, error=FileFormatError, what="file") -> dict:
    """`{name: bytes}` of a stored zip holding exactly the `expected` members."""
    if data[:1] == PICKLE_MAGIC:
        raise error(f"{path} is a Python pickle, not an ember {what}: refused, ember never unpickles "
                    "(a pickle can run arbitrary code)")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            names = [info.filename for info in infos]
            if sorted(names) != sorted(expected):
                raise error(f"{path} is a zip holding {sorted(names)}, not an ember {what} (exactly "
                            f"{sorted(expected)}): refused, nothing in it was read")
            for info in infos:
                if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size \
                        or info.file_size > len(data):
                    raise error(f"{path}: member {info.filename} declares {info.file_size} bytes stored in "
                                f"{info.compress_size} (compression {info.compress_type}) in a file of "
                                f"{len(data)} bytes; ember writes members stored, uncompressed")
            return {info.filename: archive.read(info) for info in infos}
    except error:
        raise
    except _ZIP_ERRORS as failure:
        raise error(f"{path} is corrupt or truncated ({type(failure).__name__}: {failure}); expected an "
                    f"ember {what}") from failure


def member_names(path, data: bytes, error=FileFormatError, what="file") -> set:
    """The names in a zip (to tell what kind of file it is before reading it as one)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return set(archive.namelist())
    except _ZIP_ERRORS as failure:
        raise error(f"{path} is corrupt or truncated ({type(failure).__name__}: {failure}); expected an "
                    f"ember {what}") from failure


def read_container(path, data: bytes, json_member: str, tensors_member: str, file_format: str, version: int,
                   error=FileFormatError, what="file"):
    """(JSON document, {name: tensor}) of a container of `file_format` written by a version up to `version`."""
    members = read_members(path, data, {json_member, tensors_member}, error, what)
    document = parse_json_object(members[json_member], path, json_member, error)
    tensors = parse_safetensors(members[tensors_member], path, tensors_member, error)
    if document.get("format") != file_format:
        raise error(f"{path}: expected format {file_format!r}, found {document.get('format')!r}")
    if not isinstance(document.get("version"), int) or document["version"] > version:
        raise error(f"{path} was written by a newer ember or is damaged ({what} version "
                    f"{document.get('version')!r}; this one reads up to {version})")
    return document, tensors


def parse_json_object(data: bytes, path, member: str, error=FileFormatError) -> dict:
    """A JSON object from `data` (UTF-8)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as failure:
        raise error(f"{path}: {member} is not UTF-8 text ({failure}); expected a JSON object") from None
    try:
        value = json.loads(text)
    except ValueError as failure:
        raise error(f"{path}: {member} is not valid JSON ({failure})") from None
    except RecursionError:  # json.loads recurses once per nesting level
        raise error(f"{path}: {member} nests too deeply to be ember's") from None
    if not isinstance(value, dict):
        raise error(f"{path}: {member} holds a JSON {type(value).__name__}; expected an object")
    return value


def parse_safetensors(data: bytes, path, member: str = "weights", error=FileFormatError) -> dict:
    """`{name: tensor}` from safetensors bytes (its header is checked against the bytes it has)."""
    try:
        return load_safetensors(data)
    except Exception as failure:  # safetensors raises its own SafetensorError, and OverflowError for sizes
        raise error(f"{path}: {member} is not valid safetensors ({type(failure).__name__}: {failure})") from None
