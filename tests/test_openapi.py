"""The OpenAPI description: valid 3.1, complete both ways, served twice alike, and true to the app."""

from __future__ import annotations

import json
import re
from importlib.resources import files
from typing import Any

import hypothesis
import jsonschema_rs
import pytest
import schemathesis
import yaml
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from tests.factories import make_api_key
from thotbot.app import ThotbotApp
from thotbot.config import Settings, load_settings
from thotbot.services import Services

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _spec() -> dict[str, Any]:
    text = files("thotbot").joinpath("openapi.yaml").read_text(encoding="utf-8")
    spec: dict[str, Any] = yaml.safe_load(text)
    return spec


def _operations(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def _app_operations(app: ThotbotApp) -> set[tuple[str, str]]:
    """(method, path) of every /v1 route and /healthz; HEAD is implied by GET, as in OpenAPI."""
    assert isinstance(app.api_router, Starlette)
    api_routes = [r for r in app.api_router.routes if isinstance(r, Route)]
    web_routes = [r for r in app.web.routes if isinstance(r, Route) and r.path == "/healthz"]
    return {
        (method, route.path)
        for route in [*api_routes, *web_routes]
        for method in route.methods or ()
        if method != "HEAD"
    }


# Loaded from the packaged file at collection time: test_both_urls_serve_the_same_document shows the
# app serves this very document. (schemathesis.pytest.from_fixture does not run under pytest 9.2.)
SCHEMA = schemathesis.openapi.from_dict(_spec())


def test_spec_is_valid_openapi_3_1() -> None:
    assert _spec()["openapi"].startswith("3.1.")
    SCHEMA.validate()


def test_every_schema_is_valid_json_schema() -> None:
    # The OpenAPI meta-schema leaves Schema Objects open; check them against JSON Schema itself.
    for name, schema in _spec()["components"]["schemas"].items():
        try:
            jsonschema_rs.meta.validate({"$schema": SCHEMA_DIALECT, **schema})
        except jsonschema_rs.ValidationError as exc:  # pragma: no cover - the message names the schema
            pytest.fail(f"components.schemas.{name}: {exc}")


def test_bearer_scheme_applies_everywhere_but_public_endpoints() -> None:
    spec = _spec()

    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "thot_ak_ + 96 hex",
        "description": spec["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    assert spec["security"] == [{"bearerAuth": []}]
    public = {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS and operation.get("security") == []
    }
    assert public == {("POST", "/v1/keys/revoke-leaked"), ("GET", "/healthz")}


def test_every_error_is_a_problem_with_no_store() -> None:
    spec = _spec()
    responses = spec["components"]["responses"]
    for path, item in spec["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method in HTTP_METHODS & item.keys():
            for status, response in item[method]["responses"].items():
                response = responses[response["$ref"].rsplit("/", 1)[1]] if "$ref" in response else response
                where = f"{method.upper()} {path} {status}"
                assert "Cache-Control" in response["headers"], where
                if int(status) >= 400:
                    assert list(response["content"]) == ["application/problem+json"], where
                    schema = response["content"]["application/problem+json"]["schema"]
                    assert schema["allOf"][0] == {"$ref": "#/components/schemas/Problem"}, where
                    assert schema["allOf"][1]["properties"]["status"] == {"const": int(status)}, where
                if status == "401":
                    assert response["headers"]["WWW-Authenticate"]["$ref"].endswith("WWWAuthenticate"), where
                if status == "429":
                    assert response["headers"]["Retry-After"]["$ref"].endswith("RetryAfter"), where


def test_spec_holds_no_key() -> None:
    text = files("thotbot").joinpath("openapi.yaml").read_text(encoding="utf-8")

    assert not re.search(r"thot_ak_[0-9a-fA-F]{8,}", text)


def test_every_route_is_documented_and_every_operation_exists(app: ThotbotApp) -> None:
    assert _operations(_spec()) == _app_operations(app)


def test_both_urls_serve_the_same_document(client: TestClient) -> None:
    as_yaml = client.get("/openapi/api.yaml")
    as_json = client.get("/openapi/api.json")

    assert as_yaml.status_code == as_json.status_code == 200
    assert as_yaml.headers["content-type"].startswith("application/yaml")
    assert as_json.headers["content-type"].startswith("application/json")
    assert yaml.safe_load(as_yaml.text) == json.loads(as_json.text) == _spec()


@pytest.mark.parametrize("chunked", [False, True], ids=["declared-length", "chunked"])
def test_an_oversized_body_gets_the_documented_413(client: TestClient, chunked: bool) -> None:
    body = b" " * (1024 * 1024 + 1)

    response = client.post(
        "/v1/keys/revoke-leaked",
        content=iter([body]) if chunked else body,
        headers={"content-type": "application/json"},
    )

    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["cache-control"] == "no-store"
    assert response.json()["code"] == "content_too_large"
    SCHEMA["/v1/keys/revoke-leaked"]["POST"].validate_response(response)


# The fuzz run: schemathesis generates valid and invalid requests for every documented operation and
# checks each answer against the description. It runs on SQLite only, with limits no run can reach.


@pytest.fixture
def settings(sqlite_url: str) -> Settings:
    return load_settings(
        database_url=sqlite_url,
        rate_limit="100000/minute",
        anon_rate_limit="100000/minute",
    )


@pytest.fixture(params=["granted", "read_only"])
def fuzz_headers(request: pytest.FixtureRequest, services: Services) -> dict[str, str]:
    """A real key, built at run time: one with every grant, or a read-only one."""
    raw, record = make_api_key(services, name="fuzz", read_only=request.param == "read_only")
    if request.param == "granted":
        services.keys.grant(record.id, "account:security")
    return {"Authorization": f"Bearer {raw}", "User-Agent": "thotbot-tests/0 (tests/test_openapi.py)"}


@hypothesis.settings(
    max_examples=25,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)
@SCHEMA.parametrize()
def test_app_conforms_to_its_description(
    case: schemathesis.Case[Any], app: ThotbotApp, fuzz_headers: dict[str, str]
) -> None:
    response = case.call(app=app, headers=fuzz_headers)

    assert response.status_code < 500, response.text
    case.validate_response(
        response,
        checks=[
            status_code_conformance,
            content_type_conformance,
            response_headers_conformance,
            response_schema_conformance,
        ],
    )
