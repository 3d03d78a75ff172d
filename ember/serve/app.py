"""All the wiring in one place: repository -> data plane -> both protocols' routes, metrics, error answers."""
import contextlib
import gc

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from ember.serve import rest_v1, rest_v2
from ember.serve.dataplane import DataPlane
from ember.serve.errors import ServeError
from ember.serve.fastpath import InferenceFrontDoor
from ember.serve.httpio import internal_error_response, json_response, serve_error_response
from ember.serve.metrics import CONTENT_TYPE, ServerMetrics
from ember.serve.repository import ModelRepository


def create_app(path, config) -> InferenceFrontDoor:
    """Load every model under `path` now (so a bad PATH fails before the port opens), then build the app."""
    metrics = ServerMetrics()
    repository = ModelRepository(path, config, metrics)
    repository.load()
    dataplane = DataPlane(repository, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        repository.start_polling()
        # What is alive now (torch, ONNX Runtime, the models) lives as long as the server; frozen, full
        # collections stop scanning it (they otherwise stall every request for tens of milliseconds).
        gc.collect()
        gc.freeze()
        yield
        repository.close()  # uvicorn has already let in-flight requests finish

    app = FastAPI(title="ember serve", version="1",
                  description="TF Serving REST (/v1) and KServe v2 (/v2) for ember exports", lifespan=lifespan)
    app.state.dataplane = dataplane
    routers = [rest_v1.router(dataplane, config.max_body_bytes), rest_v2.router(dataplane, config.max_body_bytes)]
    for api in routers:
        app.include_router(api)

    @app.get("/metrics", summary="Prometheus metrics", tags=["metrics"])
    async def prometheus_metrics():
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    app.add_exception_handler(ServeError, serve_error_response)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, internal_error_response)
    app.openapi = _without_422(app.openapi)
    return InferenceFrontDoor(app, [route for api in routers for route in api.routes])


async def _http_error(request, error: HTTPException):
    message = {404: f"no route {request.url.path}: expected /v1/models/..., /v2/..., /metrics or /docs",
               405: f"method {request.method} is not allowed on {request.url.path}"}.get(error.status_code, error.detail)
    return json_response({"error": message}, error.status_code)


async def _validation_error(request, error: RequestValidationError):
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
    return json_response({"error": f"bad request: {problems}"}, 400)


def _without_422(openapi):
    """FastAPI documents validation errors as 422; this server answers them 400 (as TF Serving does)."""
    def document() -> dict:
        schema = openapi()
        for operations in schema["paths"].values():
            for operation in operations.values():
                operation["responses"].pop("422", None)
        return schema

    return document
