"""Decoding a large request in a worker thread, so one big body does not stall every other client.

The event loop serves every connection; decoding 15 MiB of JSON or BYTES on it (seconds of Python and
numpy work) made every other client wait as long. Above LARGE_INPUT_BYTES the work moves to anyio's worker
threads: they still share the GIL, but the interpreter switches threads every few milliseconds, so the
loop keeps answering. Small requests stay on the loop, where a thread hop would cost more than the work.
"""
import anyio.to_thread

LARGE_INPUT_BYTES = 128 * 1024  # about a millisecond of JSON parsing and numpy conversion


async def decode_off_loop(size: int, decode, *args):
    """`decode(*args)`, in a worker thread when the input it decodes has `size` bytes or more."""
    if size < LARGE_INPUT_BYTES:
        return decode(*args)
    return await anyio.to_thread.run_sync(decode, *args)
