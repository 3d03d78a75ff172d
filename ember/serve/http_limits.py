"""uvicorn's httptools protocol with the limits it lacks: request head size, read deadlines, open connections.

uvicorn (0.54, httptools) reads a request head of any size (httptools joins a header line chunk by chunk:
a 64 MiB line took 6-9 s and +127 MiB, stalling every client) and waits forever for a request to
complete (a socket that sends half a request is held until the process runs out of file descriptors,
and then good clients are refused). Per connection, `LimitedHttpToolsProtocol`:

- answers 431 and closes once a request head (request line and headers) passes `max_header_bytes`:
  a head reaches the parser at most that many bytes at a time;
- closes a connection whose request head has not fully arrived within `header_timeout_seconds` of the
  connection opening or of the head's first byte (answered 408 when part of it came), and one whose body
  has not fully arrived within `body_timeout_seconds` of its head;
- answers 503 and closes a new connection while `max_connections` are open.

Idle keep-alive connections between requests stay uvicorn's (closed after `timeout_keep_alive`, 5 s).
"""
import functools
import logging
import resource
from dataclasses import dataclass

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

log = logging.getLogger("ember.serve")
_SPARE_FILE_DESCRIPTORS = 256  # beyond the sockets: model files, runtime and batch threads, the listener, logs


@dataclass(frozen=True)
class HttpLimits:
    max_header_bytes: int = 64 * 1024
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 60.0
    max_connections: int = 1000

    def __post_init__(self):
        for name in ("max_header_bytes", "max_connections"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("header_timeout_seconds", "body_timeout_seconds"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise ValueError(f"{name} must be a number of seconds > 0, got {value!r}")


def protocol_with(limits: HttpLimits):
    """What uvicorn.run(http=...) takes: builds one LimitedHttpToolsProtocol per connection."""
    return functools.partial(LimitedHttpToolsProtocol, limits=limits)


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args, limits: HttpLimits, **kwargs):
        super().__init__(*args, **kwargs)
        self.limits = limits
        self._in_head = True  # the bytes arriving now belong to a request head (none has started yet, or one is)
        self._head_bytes = 0
        self._deadline = None  # the timer that closes the connection when a head or body is late

    # -- connections ---------------------------------------------------------------------------------
    def connection_made(self, transport):
        super().connection_made(transport)  # counts this connection among the server's
        if len(self.connections) > self.limits.max_connections:
            self._answer_and_close(503, f"the server holds its limit of {self.limits.max_connections} open "
                                        f"connections (max_connections); retry later")
            return
        self._start_deadline(self.limits.header_timeout_seconds, "request head", "header_timeout_seconds")

    def connection_lost(self, exc):
        self._cancel_deadline()
        super().connection_lost(exc)

    # -- the request head's size ---------------------------------------------------------------------
    def data_received(self, data: bytes):
        # A head is fed to the parser in pieces that keep it within max_header_bytes, so httptools never
        # buffers more; once the head is complete, the rest of the data (the body) goes in whole. (A head
        # pipelined behind a body in the same read is not counted; reads are at most 256 KiB.)
        while self._in_head and data:
            room = self.limits.max_header_bytes - self._head_bytes
            if room <= 0:
                self._answer_and_close(431, f"the request head (request line and headers) exceeds "
                                            f"{self.limits.max_header_bytes} bytes (max_header_bytes)")
                return
            piece, data = (data, b"") if len(data) <= room else (memoryview(data)[:room], memoryview(data)[room:])
            self._head_bytes += len(piece)
            super().data_received(piece)
            if self.transport.is_closing() or self.transport.get_protocol() is not self:
                return  # answered (a parser error's 400) or handed to a WebSocket protocol
        if data:
            super().data_received(data)

    # -- deadlines (the parser's callbacks, in the order they come) ----------------------------------
    def on_message_begin(self):
        super().on_message_begin()
        if self._deadline is None:  # a keep-alive connection's next request: its head starts now
            self._start_deadline(self.limits.header_timeout_seconds, "request head", "header_timeout_seconds")

    def on_headers_complete(self):
        self._in_head = False
        self._start_deadline(self.limits.body_timeout_seconds, "request body", "body_timeout_seconds")
        super().on_headers_complete()

    def on_message_complete(self):
        self._cancel_deadline()
        self._in_head, self._head_bytes = True, 0  # the next bytes start the next request's head
        super().on_message_complete()

    def _start_deadline(self, seconds: float, part: str, setting: str):
        self._cancel_deadline()
        self._deadline = self.loop.call_later(seconds, self._late, seconds, part, setting)

    def _cancel_deadline(self):
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _late(self, seconds: float, part: str, setting: str):
        self._deadline = None
        if self._in_head:  # a 408 only for a head that began, and not in the middle of a pipelined response
            can_answer = self._head_bytes > 0 and (self.cycle is None or self.cycle.response_complete)
        else:  # the body's own request may have been answered already (e.g. 413 before reading it)
            can_answer = not self.cycle.response_started
        if can_answer:
            self._answer_and_close(408, f"the {part} did not arrive within {seconds:g} s ({setting})")
        elif not self.transport.is_closing():
            self.transport.close()

    # -- answers the app never sees --------------------------------------------------------------------
    def _answer_and_close(self, status: int, message: str):
        if self.transport.is_closing():
            return
        body = orjson.dumps({"error": message})
        self.transport.write(b"".join([STATUS_LINE[status], b"content-type: application/json\r\n",
                                       b"content-length: %d\r\n" % len(body), b"connection: close\r\n\r\n", body]))
        self.transport.close()


def ensure_file_descriptors(limits: HttpLimits):
    """Raise the process's soft limit on open files to hold `max_connections` sockets and spare, so the
    connection limit, not the file-descriptor limit, is what a flood of connections meets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = limits.max_connections + _SPARE_FILE_DESCRIPTORS
    if soft >= needed:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        log.warning("max_connections %d needs about %d open files; the hard limit is %d (ulimit -Hn): past it "
                    "new connections fail before max_connections is reached", limits.max_connections, needed, hard)
