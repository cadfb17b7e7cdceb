"""ExactRoutes: reads go straight to their handler and answer exactly as through Starlette."""

from __future__ import annotations

import logging

import pytest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from thotbot.api.dispatch import ExactRoutes
from thotbot.api.problems import http_exception_handler, server_error_handler, thotbot_error_handler
from thotbot.core.errors import NotFound, ThotbotError

calls: list[str] = []


async def hello(request: Request) -> Response:
    calls.append(f"hello {request.app.state.name} {request.path_params}")
    return JSONResponse({"hello": request.query_params.get("who", "you")})


async def missing(request: Request) -> Response:
    raise NotFound("Nothing here.")


async def teapot(request: Request) -> Response:
    raise HTTPException(400, "bad")


async def broken(request: Request) -> Response:
    raise RuntimeError("a bug")


async def item(request: Request) -> Response:
    return JSONResponse({"id": request.path_params["item_id"]})


def _app() -> tuple[Starlette, ExactRoutes]:
    app = Starlette(
        routes=[
            Route("/v1/hello", hello, methods=["GET"]),
            Route("/v1/hello", hello, methods=["POST"]),
            Route("/v1/missing", missing, methods=["GET"]),
            Route("/v1/teapot", teapot, methods=["GET"]),
            Route("/v1/broken", broken, methods=["GET"]),
            Route("/v1/items/{item_id}", item, methods=["GET"]),
        ],
        exception_handlers={
            ThotbotError: thotbot_error_handler,
            HTTPException: http_exception_handler,
            Exception: server_error_handler,
        },
    )
    app.state.name = "api"
    return app, ExactRoutes(app)


@pytest.fixture
def pair() -> tuple[TestClient, TestClient]:
    """The same routes through Starlette alone and through ExactRoutes."""
    app, exact = _app()
    return TestClient(app, raise_server_exceptions=False), TestClient(exact, raise_server_exceptions=False)


def test_only_reads_without_parameters_take_the_short_way() -> None:
    _, exact = _app()

    assert set(exact.exact) == {"/v1/hello", "/v1/missing", "/v1/teapot", "/v1/broken"}
    assert set(exact.exact["/v1/hello"]) == {"GET", "HEAD"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/hello?who=me"),
        ("HEAD", "/v1/hello"),
        ("POST", "/v1/hello"),
        ("DELETE", "/v1/hello"),
        ("GET", "/v1/missing"),
        ("GET", "/v1/teapot"),
        ("GET", "/v1/items/42"),
        ("GET", "/v1/nowhere"),
    ],
)
def test_answers_as_starlette_does(pair: tuple[TestClient, TestClient], method: str, path: str) -> None:
    through_starlette, through_exact = pair

    expected = through_starlette.request(method, path)
    answered = through_exact.request(method, path)

    assert (answered.status_code, answered.content) == (expected.status_code, expected.content)
    assert answered.headers.items() == expected.headers.items()


def test_the_handler_sees_the_app_and_no_path_parameters(pair: tuple[TestClient, TestClient]) -> None:
    calls.clear()

    pair[1].get("/v1/hello")

    assert calls == ["hello api {}"]


def test_a_bug_in_a_handler_is_a_logged_500_problem(
    pair: tuple[TestClient, TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="thotbot.api"):
        response = pair[1].get("/v1/broken")

    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "internal_error"
    assert "a bug" not in response.text
    assert any("a bug" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)
