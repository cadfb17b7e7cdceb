"""The OpenAPI description: valid 3.1, complete both ways, served twice alike, and true to the app."""

from __future__ import annotations

import ast
import inspect
import json
import re
import textwrap
from collections.abc import Callable, Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import hypothesis
import jsonschema_rs
import pytest
import schemathesis
import yaml
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
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
from thotbot.core import errors
from thotbot.core.errors import (
    AccountDisabled,
    APIKeyInURL,
    AuthenticationError,
    ConfigError,
    Conflict,
    ContentTooLarge,
    DatabaseUnavailable,
    DuplicateAuthorization,
    EmailNotVerified,
    ExpiredAPIKey,
    InsufficientScope,
    InvalidAPIKey,
    InvalidSignature,
    IPNotAllowed,
    MalformedAPIKey,
    MethodNotAllowed,
    MissingAPIKey,
    NotFound,
    RateLimited,
    RestrictedEndpoint,
    RevokedAPIKey,
    SessionCookieNotAccepted,
    ThotbotError,
    UnsupportedAuthScheme,
    ValidationFailed,
)
from thotbot.core.identity import READ_METHODS, is_restricted
from thotbot.core.names import NAME_PATTERN
from thotbot.services import Services
from thotbot.web.guard import PUBLIC_ENDPOINTS

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


def _documented_path(route: Route) -> str:
    """The route's path as the description writes it: ``{key_id:key_id}`` is ``{key_id}``."""
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)


def _app_operations(app: ThotbotApp) -> set[tuple[str, str]]:
    """(method, path) of every /v1 route and /healthz; HEAD is implied by GET, as in OpenAPI."""
    assert isinstance(app.api_router, Starlette)
    api_routes = [r for r in app.api_router.routes if isinstance(r, Route)]
    web_routes = [r for r in app.web.routes if isinstance(r, Route) and r.path == "/healthz"]
    return {
        (method, _documented_path(route))
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
    assert public == {
        ("POST", "/v1/keys/revoke-leaked"),
        ("POST", "/v1/secret-scanning/report"),
        ("GET", "/healthz"),
    }


def _responses(spec: dict[str, Any]) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """(method, path, status, response) of every documented answer, $refs to responses resolved."""
    components = spec["components"]["responses"]
    for path, item in spec["paths"].items():
        for method in HTTP_METHODS & item.keys():
            for status, response in item[method]["responses"].items():
                if "$ref" in response:
                    response = components[response["$ref"].rsplit("/", 1)[1]]
                yield method.upper(), path, status, response


def test_every_error_is_a_plain_problem_with_no_store() -> None:
    """Every error is the one Problem schema, by $ref and nothing else: no allOf, no const.

    Generators (openapi-python-client, openapi-typescript) turn a plain $ref into one typed model
    and parse every error into it; an allOf with a const status made them drop the body.
    """
    spec = _spec()
    problem = spec["components"]["schemas"]["Problem"]
    for method, path, status, response in _responses(spec):
        where = f"{method} {path} {status}"
        error = status.startswith(("4", "5"))
        if path.startswith("/v1/") or not error:
            assert "Cache-Control" in response["headers"], where
        if path.startswith("/v1/") and (method, path) not in PUBLIC_ENDPOINTS and status.startswith("2"):
            # The guard adds it to any answer to a key whose User-Agent is missing or generic.
            assert response["headers"]["Thotbot-Notice"]["$ref"].endswith("ThotbotNotice"), where
        if error and "content" in response:
            if path == "/healthz" and status == "503":
                continue  # the health check's own JSON, for load balancers
            assert list(response["content"]) == ["application/problem+json"], where
            content = response["content"]["application/problem+json"]
            assert content["schema"] == {"$ref": "#/components/schemas/Problem"}, where
            if "example" in content:
                jsonschema_rs.validate(problem, content["example"])
                assert str(content["example"]["status"]) == status, where
        if status == "401":
            assert response["headers"]["WWW-Authenticate"]["$ref"].endswith("WWWAuthenticate"), where
        if status == "429":
            assert response["headers"]["Retry-After"]["$ref"].endswith("RetryAfter"), where


def test_the_key_name_pattern_is_the_servers() -> None:
    name = _spec()["components"]["schemas"]["KeyCreate"]["properties"]["name"]

    assert name["pattern"] == NAME_PATTERN
    assert name["maxLength"] == 100


def test_spec_holds_no_key() -> None:
    text = files("thotbot").joinpath("openapi.yaml").read_text(encoding="utf-8")

    assert not re.search(r"thot_ak_[0-9a-fA-F]{8,}", text)


def test_every_route_is_documented_and_every_operation_exists(app: ThotbotApp) -> None:
    assert _operations(_spec()) == _app_operations(app)


# Every answer the app can give is documented, and every documented answer can be given.

#: Raised by the guard (web/guard.py) on every /v1 operation, before routing: a key in the URL,
#: the rate limit (per key, or per address for public and failed requests), and the last resort
#: for whatever broke (a ThotbotError() is internal_error).
_EVERY_OPERATION: frozenset[type[ThotbotError]] = frozenset({APIKeyInURL, RateLimited, ThotbotError})
#: Raised by the key verifier (auth/verifier.py) on every operation that needs a key: the 401s,
#: the disabled account, a key used from outside its IP allowlist, and the database not answering
#: a cache miss.
_NEEDS_A_KEY = frozenset(
    {
        MissingAPIKey,
        UnsupportedAuthScheme,
        SessionCookieNotAccepted,
        MalformedAPIKey,
        DuplicateAuthorization,
        InvalidAPIKey,
        ExpiredAPIKey,
        RevokedAPIKey,
        AccountDisabled,
        IPNotAllowed,
        DatabaseUnavailable,
    }
)
#: check_key, for a read-only key on a method outside READ_METHODS.
_WRITES = frozenset({InsufficientScope})
#: routes.restricted, on the endpoints core.identity.is_restricted names.
_RESTRICTED = frozenset({RestrictedEndpoint})
#: The body limit (app._BodyLimit) and read_json_object, on every operation that reads a body.
_READS_A_BODY = frozenset({ContentTooLarge, ValidationFailed})
#: What the domain services a handler calls raise, beyond what the handler raises itself (the test
#: reads those from its source): key_lifecycle.revoke for another account's key, the email change's
#: hourly limit, the password throttle, storage.passkeys for a credential registered twice,
#: account_security.remove_passkey for no such passkey.
_SERVICES: dict[tuple[str, str], frozenset[type[ThotbotError]]] = {
    ("DELETE", "/v1/keys/{key_id}"): frozenset({NotFound}),
    ("PUT", "/v1/account/email"): frozenset({RateLimited}),
    ("PUT", "/v1/account/password"): frozenset({RateLimited}),
    ("POST", "/v1/account/passkeys"): frozenset({Conflict}),
    ("DELETE", "/v1/account/passkeys/{passkey_id}"): frozenset({NotFound}),
    # It reads its body raw (the body limit) and core.scanning.parse_reports validates it; without
    # THOTBOT_SECRET_SCANNING_KEYS the route is not there and the path answers 404 to everyone.
    ("POST", "/v1/secret-scanning/report"): frozenset({ContentTooLarge, ValidationFailed, NotFound}),
}
#: Errors that no documented operation answers, and why.
_NOT_PER_OPERATION = {
    ConfigError: "a bad setting stops start-up; never an answer",
    MethodNotAllowed: "a method an operation does not list: undocumentable per operation",
}
#: /healthz answers these without the application: the HTTP server's own refusals.
_SERVER_REFUSALS = "4XX"


def _handler(route: Route) -> Callable[..., Any]:
    endpoint: Callable[..., Any] = inspect.unwrap(route.endpoint)
    return endpoint


def _source_answers(handler: Callable[..., Any]) -> tuple[set[int], set[type[ThotbotError]], bool]:
    """What a handler's own source answers: the status_code= it passes (200 where a response is
    built or returned without one), the ThotbotError classes it raises, and whether it reads a
    JSON body (read_json_object)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(handler)))
    statuses: set[int] = set()
    raised: set[type[ThotbotError]] = set()
    default = True
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                if keyword.arg == "status_code":
                    value = keyword.value
                    assert isinstance(value, ast.Constant), ast.dump(value)  # a literal, to be read here
                    assert isinstance(value.value, int), ast.dump(value)
                    statuses.add(value.value)
                    default = False
        if isinstance(node, ast.Raise) and node.exc is not None:
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            found = getattr(errors, target.id, None) if isinstance(target, ast.Name) else None
            if isinstance(found, type) and issubclass(found, ThotbotError):
                raised.add(found)
    json_without_status = any(
        isinstance(n, ast.Call)
        and isinstance(n.func, ast.Name)
        and n.func.id == "JSONResponse"
        and not any(k.arg == "status_code" for k in n.keywords)
        for n in ast.walk(tree)
    )
    if default or json_without_status:
        statuses.add(200)
    reads_body = any(
        isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "read_json_object"
        for n in ast.walk(tree)
    )
    return statuses, raised, reads_body


def _answers(app: ThotbotApp) -> dict[tuple[str, str], tuple[set[str], set[type[ThotbotError]]]]:
    """(method, path) -> (the statuses it can answer, the errors it can raise), from the code."""
    assert isinstance(app.api_router, Starlette)
    answers = {}
    for route in app.api_router.routes:
        assert isinstance(route, Route)
        for method in (route.methods or set()) - {"HEAD"}:
            op = (method, _documented_path(route))
            statuses, raised, reads_body = _source_answers(_handler(route))
            raised |= _EVERY_OPERATION | _SERVICES.get(op, frozenset())
            if op not in PUBLIC_ENDPOINTS:
                raised |= _NEEDS_A_KEY
                if method not in READ_METHODS:
                    raised |= _WRITES
            if is_restricted(method, op[1]):
                raised |= _RESTRICTED
            if reads_body:
                raised |= _READS_A_BODY
            answers[op] = ({str(s) for s in statuses} | {str(e.status) for e in raised}, raised)
    (health,) = [r for r in app.web.routes if isinstance(r, Route) and r.path == "/healthz"]
    statuses, _, _ = _source_answers(_handler(health))
    answers[("GET", "/healthz")] = ({str(s) for s in statuses} | {_SERVER_REFUSALS}, set())
    return answers


def test_every_answer_is_documented_and_every_documented_answer_can_happen(app: ThotbotApp) -> None:
    """The (method, path, status) triples of the description are exactly those the code can answer.

    The code's answers, per operation of the /v1 app and /healthz:
    - its handler's own source: the status_code= values it passes (200 when it builds or returns a
      response without one) and the ThotbotError classes it raises;
    - the guard, on every /v1 operation: 400 api_key_in_url, 429 rate_limited, 500 internal_error;
    - the key verifier, on every operation but the public ones (guard.PUBLIC_ENDPOINTS): the 401
      family, 403 account_disabled and ip_not_allowed, 503 service_unavailable; and, outside READ_METHODS, 403
      insufficient_scope for a read-only key;
    - routes.restricted, where core.identity.is_restricted says so: 403 restricted_endpoint;
    - the body limit and the JSON reader, on every handler that reads a JSON body: 413 and 422;
    - the domain services a handler calls, listed in _SERVICES;
    - /healthz also gets the HTTP server's own refusals, documented as one 4XX.
    Not per operation, so stated in the description's text instead: 404 for an unknown /v1 path,
    405 for a method a path does not list, and a CORS preflight's 204 (tests/test_cors.py).

    And each error's code is named in the description of the response documented for its status,
    so a client reading the description knows every code it may get there.
    """
    spec = _spec()
    documented: dict[tuple[str, str], set[str]] = {}
    descriptions: dict[tuple[str, str, str], str] = {}
    for method, path, status, response in _responses(spec):
        documented.setdefault((method, path), set()).add(status)
        descriptions[(method, path, status)] = response["description"]
    answers = _answers(app)

    assert {op: statuses for op, (statuses, _) in answers.items()} == documented
    for (method, path), (_, raised) in answers.items():
        for error in raised:
            where = f"{method} {path} {error.status} {error.code}"
            assert f"`{error.code}`" in descriptions[(method, path, str(error.status))], where


def test_every_error_class_has_its_place() -> None:
    """A new ThotbotError fails here until the coverage rules above say where it can be answered."""
    placed = (
        _EVERY_OPERATION
        | _NEEDS_A_KEY
        | _WRITES
        | _RESTRICTED
        | _READS_A_BODY
        | {NotFound, EmailNotVerified, InvalidSignature}  # raised by handlers (me, create_key, scanning)
        | set().union(*_SERVICES.values())
        | _NOT_PER_OPERATION.keys()
    )
    defined = {
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, ThotbotError) and value is not AuthenticationError
    }
    assert defined == placed


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
def settings(sqlite_url: str, tmp_path: Path) -> Settings:
    # GitHub's secret-scanning keys (one made here), so that its report endpoint is served too.
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    keys = tmp_path / "github-keys.json"
    keys.write_text(json.dumps({"public_keys": [{"key_identifier": "k1", "key": pem}]}), encoding="utf-8")
    return load_settings(
        database_url=sqlite_url,
        secret_scanning_keys=str(keys),
        rate_limit="100000/minute",
        anon_rate_limit="100000/minute",
    )


@pytest.fixture(params=["full", "granted", "read_only"])
def fuzz_headers(request: pytest.FixtureRequest, services: Services) -> dict[str, str]:
    """A real key, built at run time: a full one, one granted account:security, a read-only one."""
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
            negative_data_rejection,
            response_headers_conformance,
            response_schema_conformance,
        ],
    )
