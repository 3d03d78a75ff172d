"""All the wiring in one place: repository -> data plane -> both protocols' routes, metrics, error answers."""
import contextlib
import logging

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from ember.serve import rest_v1, rest_v2
from ember.serve.dataplane import DataPlane
from ember.serve.errors import ServeError
from ember.serve.httpio import json_response, serve_error_response
from ember.serve.metrics import CONTENT_TYPE, ServerMetrics
from ember.serve.repository import ModelRepository

log = logging.getLogger("ember.serve")


def create_app(path, config) -> FastAPI:
    """Load every model under `path` now (so a bad PATH fails before the port opens), then build the app."""
    metrics = ServerMetrics()
    repository = ModelRepository(path, config, metrics)
    repository.load()
    dataplane = DataPlane(repository, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        repository.start_polling()
        yield
        repository.close()  # uvicorn has already let in-flight requests finish

    app = FastAPI(title="ember serve", version="1",
                  description="TF Serving REST (/v1) and KServe v2 (/v2) for ember exports", lifespan=lifespan)
    app.state.dataplane = dataplane
    app.include_router(rest_v1.router(dataplane, config.max_body_bytes))
    app.include_router(rest_v2.router(dataplane, config.max_body_bytes))

    @app.get("/metrics", summary="Prometheus metrics", tags=["metrics"])
    async def prometheus_metrics():
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    app.add_exception_handler(ServeError, serve_error_response)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _internal_error)
    return app


async def _http_error(request, error: HTTPException):
    message = {404: f"no route {request.url.path}: expected /v1/models/..., /v2/..., /metrics or /docs",
               405: f"method {request.method} is not allowed on {request.url.path}"}.get(error.status_code, error.detail)
    return json_response({"error": message}, error.status_code)


async def _validation_error(request, error: RequestValidationError):
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
    return json_response({"error": f"bad request: {problems}"}, 400)


async def _internal_error(request, error: Exception):
    log.exception("internal error on %s %s", request.method, request.url.path)
    return json_response({"error": f"internal error: {type(error).__name__}: {error}"}, 500)
