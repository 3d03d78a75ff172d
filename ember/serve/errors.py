"""Errors a request can end in; each protocol answers them as `{"error": message}` with this status."""


class ServeError(Exception):
    status = 500

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
