import asyncio

import httpx
from fastapi import APIRouter, FastAPI, Request

from ember.serve.errors import BadRequest
from ember.serve.fastpath import InferenceFrontDoor
from ember.serve.httpio import json_response


def _front_door():
    api = APIRouter()
    seen_by_fastapi = []

    @api.post("/v2/models/{name}/versions/{version}/infer")
    async def infer(name: str, version: int, request: Request):
        if name == "bad":
            raise BadRequest("expected a good model")
        if name == "broken":
            raise RuntimeError("boom")
        return json_response({"name": name, "version": version, "body": (await request.body()).decode()})

    @api.get("/v2/health/live")
    async def live():
        return {"live": True}

    app = FastAPI()
    app.include_router(api)

    @app.middleware("http")
    async def record(request, call_next):
        seen_by_fastapi.append(request.url.path)
        return await call_next(request)

    return InferenceFrontDoor(app, api.routes), seen_by_fastapi


def _request(front, method, path, body=b""):
    async def go():
        transport = httpx.ASGITransport(app=front, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, path, content=body)

    return asyncio.run(go())


def test_inference_posts_skip_fastapi_and_convert_path_parameters():
    front, seen = _front_door()
    response = _request(front, "POST", "/v2/models/digits/versions/3/infer", b"payload")
    assert response.status_code == 200
    assert response.json() == {"name": "digits", "version": 3, "body": "payload"}
    assert seen == []


def test_everything_else_goes_to_fastapi():
    front, seen = _front_door()
    assert _request(front, "GET", "/v2/health/live").json() == {"live": True}
    # A version that is not an integer is left to FastAPI's validation.
    assert _request(front, "POST", "/v2/models/digits/versions/x/infer").status_code == 422
    assert seen == ["/v2/health/live", "/v2/models/digits/versions/x/infer"]


def test_errors_are_answered_as_the_app_answers_them():
    front, _ = _front_door()
    bad = _request(front, "POST", "/v2/models/bad/versions/1/infer")
    assert (bad.status_code, bad.json()) == (400, {"error": "expected a good model"})
    broken = _request(front, "POST", "/v2/models/broken/versions/1/infer")
    assert broken.status_code == 500 and broken.json() == {"error": "internal error: RuntimeError: boom"}
