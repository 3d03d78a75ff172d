"""The HTTP limits on a real uvicorn server in a thread, driven with raw sockets on loopback."""
import json
import socket
import threading
import time

import pytest
import uvicorn

from ember.serve import http_limits
from ember.serve.http_limits import HttpLimits, ensure_file_descriptors, protocol_with
from testing.serve import free_port

LIMITS = HttpLimits(max_header_bytes=1024, header_timeout_seconds=0.5, body_timeout_seconds=0.5, max_connections=4)


async def echo(scope, receive, send):
    """Answers every request with the size of its body."""
    if scope["type"] != "http":
        return
    size, more = 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size, more = size + len(message.get("body", b"")), message.get("more_body", False)
    body = json.dumps({"body_bytes": size}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def server():
    config = uvicorn.Config(echo, port=free_port(), http=protocol_with(LIMITS), lifespan="off", log_level="warning")
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    while not running.started:
        time.sleep(0.01)
    yield ("127.0.0.1", config.port)
    running.should_exit = True
    thread.join(10)


class Client:
    """A raw socket, so the test controls exactly which bytes reach the server, and when."""

    def __init__(self, server):
        self.sock = socket.create_connection(server, timeout=5)
        self._replies = self.sock.makefile("rb")

    def send(self, data: bytes):
        self.sock.sendall(data)

    def answer(self) -> tuple:
        """(status, body) of the next response, or (None, b"") when the server closed without one."""
        status_line = self._replies.readline()
        if not status_line:
            return None, b""
        headers = dict(line.rstrip(b"\r\n").lower().split(b": ", 1) for line in iter(self._replies.readline, b"\r\n"))
        return int(status_line.split()[1]), self._replies.read(int(headers[b"content-length"]))

    def closed_by_server(self) -> bool:
        return self._replies.read(1) == b""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._replies.close()
        self.sock.close()


def request(body: bytes = b"", extra_headers: bytes = b"") -> bytes:
    return (b"POST /x HTTP/1.1\r\nhost: t\r\ncontent-length: %d\r\n%s\r\n" % (len(body), extra_headers)) + body


def test_requests_within_the_limits_are_served_and_kept_alive(server):
    with Client(server) as client:
        body = b"x" * 200_000  # a body far over max_header_bytes, arriving with its head
        client.send(request(body))
        assert client.answer() == (200, b'{"body_bytes": 200000}')
        client.send(request(b"ab") + request(b"abc"))  # pipelined
        assert client.answer() == (200, b'{"body_bytes": 2}')
        assert client.answer() == (200, b'{"body_bytes": 3}')
        client.send(request(extra_headers=b"x-filler: " + b"y" * 900 + b"\r\n"))  # a head just under 1024 bytes
        assert client.answer()[0] == 200


def test_a_head_over_max_header_bytes_is_431(server):
    with Client(server) as client:
        client.send(b"POST /x HTTP/1.1\r\nhost: t\r\nx-big: " + b"y" * 4096)  # not even finished
        status, body = client.answer()
        assert status == 431 and json.loads(body) == {
            "error": "the request head (request line and headers) exceeds 1024 bytes (max_header_bytes)"}
        assert client.closed_by_server()


def test_a_head_over_the_limit_after_a_kept_alive_request_is_431(server):
    with Client(server) as client:
        client.send(request(b"a"))
        assert client.answer()[0] == 200
        for _ in range(3):
            client.send(b"GET /x HTTP/1.1\r\nx-big: " + b"y" * 500)
        assert client.answer()[0] == 431


def test_a_partial_head_is_408_after_header_timeout_seconds(server):
    with Client(server) as client:
        started = time.monotonic()
        client.send(b"POST /x HTTP/1.1\r\nhost: t\r\nx-slow: ")
        status, body = client.answer()
        assert status == 408 and json.loads(body)["error"] == \
            "the request head did not arrive within 0.5 s (header_timeout_seconds)"
        assert 0.4 < time.monotonic() - started < 3
        assert client.closed_by_server()


def test_a_slow_head_on_a_kept_alive_connection_is_408(server):
    with Client(server) as client:
        client.send(request(b"a"))
        assert client.answer()[0] == 200
        client.send(b"POST /x HTTP/1.1\r\n")  # the next request's head starts, then stalls
        assert client.answer()[0] == 408


def test_a_silent_connection_is_closed_without_an_answer(server):
    with Client(server) as client:
        started = time.monotonic()
        assert client.closed_by_server() and 0.4 < time.monotonic() - started < 3


def test_a_partial_body_is_408_after_body_timeout_seconds(server):
    with Client(server) as client:
        client.send(request(b"x" * 100)[:-50])  # the head, and half the body
        status, body = client.answer()
        assert status == 408 and "the request body did not arrive within 0.5 s (body_timeout_seconds)" in body.decode()


def test_connections_past_max_connections_are_503(server):
    held = [Client(server) for _ in range(LIMITS.max_connections)]
    time.sleep(0.1)  # accepted by now
    try:
        with Client(server) as extra:
            extra.send(request(b"a"))
            status, body = extra.answer()
            assert status == 503 and "limit of 4 open connections (max_connections)" in body.decode()
    finally:
        for client in held:
            client.__exit__()
    time.sleep(0.1)
    with Client(server) as client:  # room again
        client.send(request(b"a"))
        assert client.answer()[0] == 200


def test_the_soft_open_files_limit_is_raised_to_hold_max_connections(monkeypatch):
    set_to = []
    monkeypatch.setattr(http_limits.resource, "getrlimit", lambda which: (1024, 4096))
    monkeypatch.setattr(http_limits.resource, "setrlimit", lambda which, limits: set_to.append(limits))
    ensure_file_descriptors(HttpLimits(max_connections=1000))
    ensure_file_descriptors(HttpLimits(max_connections=500))  # 500 + spare fit already
    assert set_to == [(1256, 4096)]


@pytest.mark.parametrize("settings, message", [
    ({"max_header_bytes": 0}, "max_header_bytes must be an integer >= 1, got 0"),
    ({"max_connections": True}, "max_connections must be an integer >= 1, got True"),
    ({"header_timeout_seconds": -1}, "header_timeout_seconds must be a number of seconds > 0, got -1"),
    ({"body_timeout_seconds": "60"}, "body_timeout_seconds must be a number of seconds > 0, got '60'"),
])
def test_bad_limits_are_named(settings, message):
    with pytest.raises(ValueError, match=message):
        HttpLimits(**settings)
