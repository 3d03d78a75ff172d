"""Parsing with libhdf5 in a forked child, its memory and time bounded by the file's size.

libhdf5 allocates what a file declares before checking it: in a tf.keras 2 `.h5` of 97 KiB,
4 bytes set to 0xff in the length field of a variable-length string (a `weight_names`
entry) make HDF5 2.0 allocate and fill 4 GiB, for 8.8 s, before it finds that the heap
object is 19 bytes. Other damage can make a C parser loop or crash, out of Python's reach.
So `run_forked(read)` runs the HDF5 part of reading a Keras file in a child forked from this
process (everything is already imported: a few milliseconds), under an address-space limit
of its size now plus `memory` bytes and a time limit; HDF5's allocations beyond that fail
and it reports an error. The result comes back through a pipe as JSON and raw array bytes,
decoded here with the checks any file content gets (numeric dtypes, sizes that add up): a
child the file took over could send numbers and JSON, never objects or code.

A caveat of fork: a lock another thread of this process holds at that moment (h5py's, if
another thread is inside h5py) stays held in the child, which then times out. Where there
is no fork (Windows), `read` runs in this process, without these limits.
"""
import gc
import json
import os
import re
import resource
import select
import signal
import struct
import time
import traceback

import numpy as np

from ember.saving import ModelFileError

NUMERIC_KINDS = "fiub"
_LENGTH = struct.Struct("<Q")


class ChildFailed(Exception):
    """The child's own report of an error that is not the file's (a bug): re-raised as such."""


def run_forked(read, *, memory: int, seconds: float, source: str):
    """read() in a child process: its result (JSON-like values and numpy arrays), or its
    ModelFileError, raised here. `memory` bounds what the child may allocate beyond this
    process's current address space; `seconds` how long it may take."""
    if not hasattr(os, "fork"):
        return read()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller's stack
        os.close(read_end)
        _child(read, write_end, memory)
    os.close(write_end)
    try:
        message = _receive(read_end, pid, seconds, source, limit=memory)
    finally:
        os.close(read_end)
        status = _reap(pid)
    if message is None:
        if os.WIFSIGNALED(status):
            raise ModelFileError(f"the HDF5 library crashed (signal {os.WTERMSIG(status)}) reading {source}: the "
                                 "file is damaged or crafted")
        raise ModelFileError(f"reading {source} failed without a report (exit status {status})")
    return _decode(message, source)


def _child(read, write_end, memory):
    gc.disable()  # a collection would touch every object the parent had, copying its pages
    try:
        limit = _address_space() + memory
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        try:
            result = {"value": read()}
        except ModelFileError as error:
            result = {"file_error": str(error)}
        except MemoryError:
            result = {"file_error": "reading it needs more memory than its size allows"}
        except Exception as error:  # noqa: BLE001 - reported to the parent, which raises it as a bug
            where = "".join(traceback.format_tb(error.__traceback__)[-3:])
            result = {"bug": f"{type(error).__name__}: {error}\n{where}"}
        for chunk in _encode(result):
            view = memoryview(chunk)
            while view:
                view = view[os.write(write_end, view):]
    finally:
        os._exit(0)


def _address_space():
    with open("/proc/self/status") as status:
        match = re.search(r"VmSize:\s+(\d+) kB", status.read())
    if match:
        return int(match.group(1)) * 1024
    return resource.getrlimit(resource.RLIMIT_AS)[0]


def _receive(fd, pid, seconds, source, limit):
    """All the child writes, within `seconds` and `limit` bytes; None if it wrote nothing."""
    chunks, size, deadline = [], 0, time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            os.kill(pid, signal.SIGKILL)
            raise ModelFileError(f"reading {source} did not finish within {seconds:.0f} s: the file is damaged or "
                                 "crafted (HDF5 parsing it loops)")
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks) if chunks else None
        size += len(chunk)
        if size > limit:
            os.kill(pid, signal.SIGKILL)
            raise ModelFileError(f"reading {source} returned more than {limit} bytes")
        chunks.append(chunk)


def _reap(pid):
    _, status = os.waitpid(pid, 0)
    return status


# --- the result's encoding: a JSON header, then the arrays' bytes ------------------------------------
def _encode(result):
    arrays, index = [], {}

    def plain(value):
        if isinstance(value, np.ndarray):
            if id(value) not in index:  # the same array reached twice (by name and in order) is sent once
                index[id(value)] = len(arrays)
                arrays.append(np.ascontiguousarray(value))
            return {"__array__": index[id(value)]}
        if isinstance(value, dict):
            return {key: plain(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(item) for item in value]
        return value

    header = plain(result)
    header["arrays"] = [{"dtype": a.dtype.str, "shape": list(a.shape)} for a in arrays]
    header = json.dumps(header).encode()
    yield _LENGTH.pack(len(header)) + header
    yield from (a.reshape(-1).view(np.uint8).data for a in arrays)


def _decode(message, source):
    try:
        (length,) = _LENGTH.unpack_from(message)
        header = json.loads(message[_LENGTH.size:_LENGTH.size + length])
        payload = memoryview(bytearray(message[_LENGTH.size + length:]))
        arrays, offset = [], 0
        for spec in header["arrays"]:
            dtype, shape = np.dtype(spec["dtype"]), tuple(int(d) for d in spec["shape"])
            if dtype.kind not in NUMERIC_KINDS or any(d < 0 for d in shape):
                raise ValueError(f"array of {dtype} {shape}")
            size = int(np.prod(shape, dtype=object)) * dtype.itemsize
            if offset + size > len(payload):
                raise ValueError(f"arrays of {offset + size} bytes in {len(payload)}")
            arrays.append(np.frombuffer(payload[offset:offset + size], dtype=dtype).reshape(shape))
            offset += size
    except (ValueError, TypeError, KeyError, struct.error) as error:
        raise ModelFileError(f"reading {source} returned a malformed result ({error})") from error
    if "file_error" in header:
        raise ModelFileError(str(header["file_error"]))
    if "bug" in header:
        raise ChildFailed(f"reading {source}: {header['bug']}")

    def rebuild(value):
        if isinstance(value, dict):
            if set(value) == {"__array__"}:
                return arrays[value["__array__"]]
            return {key: rebuild(item) for key, item in value.items()}
        if isinstance(value, list):
            return [rebuild(item) for item in value]
        return value

    try:
        return rebuild(header["value"])
    except (IndexError, KeyError, TypeError) as error:
        raise ModelFileError(f"reading {source} returned a malformed result ({error})") from error
