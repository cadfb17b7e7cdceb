"""/docs: every Markdown page of docs/ and the API reference, served by the app, linked together."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from starlette.testclient import TestClient

from thotbot.app import create_app
from thotbot.config import load_settings
from thotbot.core import errors
from thotbot.dashboard import documentation as docs
from thotbot.services import build_memory_services
from thotbot.usage.notice import DOCS_URL

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted((ROOT / "docs").glob("*.md"))
SPEC = yaml.safe_load((ROOT / "src" / "thotbot" / "openapi.yaml").read_text(encoding="utf-8"))
_HREF = re.compile(r'href="([^"]*)"')
_ID = re.compile(r'id="([^"]*)"')


@pytest.fixture(scope="module")
def client() -> TestClient:
    settings = load_settings()
    return TestClient(create_app(settings, build_memory_services(settings)), base_url="http://localhost")


def slug(path: Path) -> str:
    return path.stem.lower().replace("_", "-")


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_markdown_page_is_served(client: TestClient, path: Path) -> None:
    response = client.get(f"/docs/{slug(path)}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    title = path.read_text(encoding="utf-8").splitlines()[0].removeprefix("# ").replace("`", "")
    assert '<h1 id="' in response.text
    assert html.escape(title, quote=False) in response.text
    # The navigation marks the page being read, when it lists it.
    nav = response.text.split('<nav class="docs-nav"', 1)[1].split("</nav>", 1)[0]
    assert f'href="/docs/{slug(path)}" aria-current="page"' in nav


def test_the_index_and_the_navigation(client: TestClient) -> None:
    page = client.get("/docs").text
    for name, label in [
        ("quickstart", "Quick start"),
        ("authentication", "Authentication"),
        ("errors", "Errors"),
        ("rate-limits", "Rate limits"),
        ("user-agent", "User-Agent"),
        ("reference", "API reference"),
        ("security", "Security"),
        ("operating", "Operating"),
    ]:
        assert f'<a href="/docs/{name}">{label}</a>' in page
    assert '<a href="/docs" aria-current="page">Documentation</a>' in page


def test_every_link_between_pages_lands(client: TestClient) -> None:
    """Links between the .md files point at /docs/..., and every #anchor exists on its page."""
    pages = {"": client.get("/docs").text, "reference": client.get("/docs/reference").text}
    pages |= {slug(p): client.get(f"/docs/{slug(p)}").text for p in DOCS}
    checked = 0
    for name, text in pages.items():
        for href in _HREF.findall(text):
            assert ".md#" not in href, (name, href)
            assert not href.endswith(".md"), (name, href)
            if not href.startswith(("/docs", "#")):
                continue
            target, _, fragment = html.unescape(href).partition("#")
            target_page = pages[name] if not target else pages.get(target.removeprefix("/docs").strip("/"))
            if target_page is None:
                assert client.get(target).status_code == 200, (name, href)  # an image
                continue
            if fragment:
                assert fragment in _ID.findall(target_page), (name, href)
            checked += 1
    assert checked > 50


def test_links_are_rewritten(client: TestClient) -> None:
    api = client.get("/docs/api").text
    assert 'href="/docs/security#rfc-6750-www-authenticate"' in api
    assert 'id="rfc-6750-www-authenticate"' in client.get("/docs/security").text
    # A file outside docs/ is not served: its link keeps the words and loses the href.
    operating = client.get("/docs/operating").text
    assert "../deploy/nginx.conf" not in operating
    assert '<span class="file-ref"><code>deploy/nginx.conf</code></span>' in operating
    # An image of docs/ is served beside the pages.
    performance = client.get("/docs/performance").text
    if "keys_sweep.svg" in performance:
        assert 'src="/docs/keys_sweep.svg"' in performance
        image = client.get("/docs/keys_sweep.svg")
        assert image.status_code == 200
        assert image.headers["content-type"] == "image/svg+xml"


def test_the_dashboard_links_to_the_docs(client: TestClient) -> None:
    assert '<a href="/docs">Documentation</a>' in client.get("/login").text


@pytest.mark.parametrize(
    "path",
    [
        "/docs/nothing-here",
        "/docs/SECURITY.md",
        "/docs/security.md",
        "/docs/..%2Fpyproject.toml",
        "/docs/%2e%2e%2fpyproject.toml",
        "/docs/..%2F..%2Fpyproject.toml",
        "/docs/%2E%2E",
        "/docs/authentication.txt",
        "/docs/%2Fetc%2Fpasswd",
        "/docs/..%5cpyproject.toml",
        "/docs/reference%00",
        "/docs/keys_sweep.svg%2F..%2F..%2FREADME.md",
    ],
)
def test_an_unknown_page_or_a_path_out_is_the_404_page(client: TestClient, path: str) -> None:
    response = client.get(path, follow_redirects=True)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "Not found" in response.text
    for secret in ("[build-system]", "root:", "# Thotbot API platform", "Authentication\n\nAll API"):
        assert secret not in response.text


def test_errors_page_lists_every_code_with_its_status(client: TestClient) -> None:
    def every(cls: type[errors.ThotbotError]) -> Iterator[type[errors.ThotbotError]]:
        yield cls
        for sub in cls.__subclasses__():
            yield from every(sub)

    text = (ROOT / "docs" / "ERRORS.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `(\w+)` \| (\d{3}) \|", text, re.M))
    # Each class that names a code of its own (AuthenticationError and DuplicateAuthorization inherit theirs).
    codes = {
        cls.code: cls.status
        for cls in every(errors.ThotbotError)
        if cls.__module__ == errors.__name__ and "code" in vars(cls)
    }
    codes |= {"bad_request": 400, "request_header_too_large": 431, "request_timeout": 408}
    codes["too_many_connections"] = 503
    codes.pop("config_error")  # no HTTP answer: start-up stops; the page says so
    assert "`config_error`" in text
    assert {code: rows.get(code) for code in codes} == {code: str(status) for code, status in codes.items()}
    served = client.get("/docs/errors").text
    for code in codes:
        assert f"<code>{code}</code>" in served


def test_the_reference_shows_every_operation_and_schema(client: TestClient) -> None:
    page = client.get("/docs/reference").text
    for path, item in SPEC["paths"].items():
        for method, operation in item.items():
            if method not in ("get", "put", "post", "patch", "delete"):
                continue
            heading = f"{method.upper()}</span> <code>{html.escape(path)}</code></h3>"
            assert heading in page, heading
            section = page.split(heading, 1)[1].split("</section>", 1)[0]
            for status in operation["responses"]:
                assert f"<strong>{status}</strong>" in section, (method, path, status)
            if "requestBody" in operation:
                assert "Request body" in section
    for name in SPEC["components"]["schemas"]:
        assert f'id="schema-{name}"' in page
    assert "Bearer" in page


def test_the_reference_renders_whatever_structure_the_description_has(tmp_path: Path) -> None:
    """The description changes under it: parameters by $ref, inline schemas, combinators, no content."""
    spec = """
openapi: 3.1.0
info: {title: Odd, version: "2", description: "Intro with `code` and <b>no html</b>."}
paths:
  /v1/things/{id}:
    parameters:
      - $ref: "#/components/parameters/ThingID"
    patch:
      summary: Change a thing
      security: []
      requestBody:
        $ref: "#/components/requestBodies/Thing"
      responses:
        "200":
          description: "Changed."
          content:
            application/json:
              schema:
                oneOf: [{$ref: "#/components/schemas/Thing"}, {type: array, items: {type: string}}]
        default: {description: Anything else.}
    trace: {responses: {}}
  /v1/empty: {}
components:
  parameters:
    ThingID: {name: id, in: path, required: true, schema: {type: string, format: uuid}}
  requestBodies:
    Thing: {required: true, content: {application/json: {schema: {$ref: "#/components/schemas/Thing"}}}}
  schemas:
    Thing:
      type: object
      required: [name]
      properties:
        name: {type: string, description: The name.}
        kind: {enum: [a, b]}
    Flag: {const: true}
"""
    (tmp_path / "A_PAGE.md").write_text("# A page\n\nHello <script>alert(1)</script>.\n", encoding="utf-8")
    site = docs.build_site(tmp_path, spec)
    page = site.pages["reference"].decode()
    assert "PATCH</span> <code>/v1/things/{id}</code>" in page
    assert '<code>id</code> <span class="muted small">required</span>' in page
    assert "string (uuid)" in page
    assert '<a href="#schema-Thing"><code>Thing</code></a> or array of string' in page
    assert "<strong>default</strong>" in page
    assert "No authentication." in page
    assert "&lt;b&gt;no html&lt;/b&gt;" in page
    assert "<b>no html" not in page
    assert "<code>a</code> | <code>b</code>" in page
    assert "<code>true</code>" in page
    # Raw HTML in a Markdown page is text, never markup.
    own = site.pages["a-page"].decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in own
    assert "<script>alert" not in own
    assert site.find("../A_PAGE.md") is None
    assert site.find("A_PAGE.md") is None


def test_pages_are_rendered_once_per_process() -> None:
    assert docs.site() is docs.site()


def test_code_blocks_and_tables_can_be_scrolled_with_the_keyboard(client: TestClient) -> None:
    """Wider than a phone's screen, they scroll: focusable, named regions (scrollable-region-focusable)."""
    page = client.get("/docs/errors").text
    assert '<pre class="example" tabindex="0" role="region" aria-label="Example (sh): Errors">' in page
    assert '<div class="doc-table" tabindex="0" role="region" aria-label="Table: Every code">' in page
    labels = re.findall(r'role="region" aria-label="([^"]*)"', page)
    assert len(labels) == len(set(labels)) > 5


def test_the_user_agent_notice_points_at_a_section_that_exists(client: TestClient) -> None:
    """Thotbot-Notice sends people to /docs/authentication#user-agent: the page and heading exist."""
    url = urlsplit(DOCS_URL)
    page = client.get(url.path)
    assert page.status_code == 200
    assert f'id="{url.fragment}"' in page.text


def test_the_pages_ship_inside_the_package() -> None:
    """An installed wheel has no checkout around it: /docs reads the package's docs/, which the
    wheel carries as package data (a link to the repository's docs/ in a checkout)."""
    import tomllib

    package = Path(docs.__file__).resolve().parents[1]
    assert package / "docs" == docs.DOCS_DIR
    assert sorted(p.name for p in docs.DOCS_DIR.glob("*.md")) == [p.name for p in DOCS]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    data = project["tool"]["setuptools"]["package-data"]["thotbot"]
    assert "docs/*.md" in data
    assert "docs/*.svg" in data


def test_a_column_of_row_names_under_an_empty_header_cell_heads_its_rows() -> None:
    """Each row's first cell then names the row (th scope=row): every data cell has a header, as
    screen readers and the td-has-header audit (axe, Lighthouse) expect of a table."""
    text = "# T\n\n| | before | after |\n| --- | ---: | --- |\n| flushes | 2 | 1 |\n| runs | 4 | 16 |\n"
    text += "\n| name | value |\n| --- | --- |\n| a | b |\n"
    _, _, body = docs.render_markdown(text, {})
    first, second = str(body).split('<div class="doc-table"')[1:]
    assert "<td></td>" in first  # the empty header cell heads nothing
    assert re.findall(r"<th scope=\"row\">(\w+)</th>", first) == ["flushes", "runs"]
    assert '<td class="align-right">2</td>' in first
    assert len(re.findall(r"<th[ >]", first)) == 4  # two column headers, two row headers
    assert "scope" not in second  # a named first column is data
    assert "<td>a</td>" in second
