"""Errors a request can end in; each protocol answers them as `{"error": message}` with this status."""


class ServeError(Exception):
    status = 500  # subclasses name the status; a client's mistake is always a 4xx

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class BadRequest(ServeError):
    status = 400


class NotFound(ServeError):
    status = 404


class PayloadTooLarge(ServeError):
    status = 413


class Unavailable(ServeError):
    status = 503


class InternalError(ServeError):
    """The server's fault (e.g. a model that fails on an input it was checked to take): never a client 4xx."""
    status = 500


def last_line(error: Exception) -> str:
    """The line of an exception's message that says what failed (runtimes put it last), at most 500 characters."""
    lines = str(error).strip().splitlines()
    return lines[-1][:500] if lines else type(error).__name__
