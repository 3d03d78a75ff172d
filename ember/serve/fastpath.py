"""The ASGI front door: inference requests go straight to their endpoint, everything else to FastAPI.

FastAPI's per-request machinery (five middleware layers, dependency solving, route scan) cost about as
much CPU as decoding, checking, batching and encoding a small model's request put together. The
inference routes are still declared on the FastAPI app, which documents them in OpenAPI and answers
anything the front door does not match (every GET, and a POST whose path parameters do not convert).
"""
import inspect

from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect, Request

from ember.serve.errors import ServeError
from ember.serve.httpio import internal_error_response, serve_error_response


class InferenceFrontDoor:
    """Wraps the FastAPI app; the POST routes among `routes` (the inference endpoints) are called directly."""

    def __init__(self, app, routes: list):
        self.app = app
        self.state = app.state
        self._routes = [(route.path_regex, route.endpoint, _converters(route.endpoint))
                        for route in routes if isinstance(route, APIRoute) and route.methods == {"POST"}]

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST":
            for path_regex, endpoint, converters in self._routes:
                match = path_regex.match(scope["path"])
                if match is None:
                    continue
                try:
                    params = {name: converters[name](value) for name, value in match.groupdict().items()}
                except ValueError:
                    break  # FastAPI answers with its validation message
                await self._call(endpoint, params, scope, receive, send)
                return
        await self.app(scope, receive, send)

    @staticmethod
    async def _call(endpoint, params: dict, scope, receive, send):
        request = Request(scope, receive)
        try:
            response = await endpoint(request=request, **params)
        except ClientDisconnect:
            return
        except ServeError as error:
            response = await serve_error_response(request, error)
        except Exception as error:  # noqa: BLE001 - the answer is a 500 naming it, as FastAPI's handler gives
            response = await internal_error_response(request, error)
        await response(scope, receive, send)


def _converters(endpoint) -> dict:
    """Path parameter name -> its type (int or str), read from the endpoint's annotations."""
    return {name: parameter.annotation for name, parameter in inspect.signature(endpoint).parameters.items()
            if parameter.annotation in (int, str)}
