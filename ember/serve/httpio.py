"""What both protocols' routes share: bounded body reading, JSON in and out, error answers."""
import logging

import numpy as np
import orjson
from starlette.requests import Request
from starlette.responses import Response

from ember.serve.errors import BadRequest, PayloadTooLarge, ServeError
from ember.serve.untrusted import decimal_int

JSON = "application/json"
log = logging.getLogger("ember.serve")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or 413 once it is known to exceed `limit` bytes (before reading it when declared)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        size = decimal_int(declared)
        if size is None:  # the HTTP parser refuses these; an ASGI caller in the same process might not
            raise BadRequest(f"Content-Length: expected the body's size in bytes, got {declared[:40]!r}")
        if size > limit:
            raise PayloadTooLarge(f"request body of {size} bytes exceeds the limit of {limit} bytes "
                                  f"(max_body_bytes in the config file)")
    if request.headers.get("content-encoding", "identity") != "identity":
        raise BadRequest(f"unsupported Content-Encoding {request.headers['content-encoding']!r}: "
                         f"expected an uncompressed body")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes (max_body_bytes)")
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def parse_json(data, what: str):
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"malformed JSON ({error}); expected {what}") from None


def json_array(value, name: str) -> np.ndarray:
    """A JSON value (nested lists of numbers) as an array; the data plane checks dtype and shape."""
    try:
        return np.asarray(value)
    except (ValueError, TypeError, OverflowError) as error:
        raise BadRequest(f"input {name!r}: expected a (nested) list of numbers with a regular shape ({error})")


def json_response(content, status: int = 200) -> Response:
    return Response(orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY), status, media_type=JSON)


async def serve_error_response(request: Request, error: ServeError) -> Response:
    return json_response({"error": error.message}, error.status)


async def internal_error_response(request: Request, error: Exception) -> Response:
    log.exception("internal error on %s %s", request.method, request.url.path)
    return json_response({"error": f"internal error: {type(error).__name__}: {error}"}, 500)


ERROR_SCHEMA = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
ERROR_RESPONSES = {status: {"description": text, "content": {JSON: {"schema": ERROR_SCHEMA}}}
                   for status, text in ((400, "bad input, named"), (404, "unknown model or version"),
                                        (413, "body over max_body_bytes"), (503, "queue full"))}
