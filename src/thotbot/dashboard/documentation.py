"""The documentation site at /docs: the Markdown files of docs/ and the OpenAPI description, as pages.

Everything is rendered on the server, once per process (the first request builds every page), with
markdown-it-py (CommonMark and tables; raw HTML in a Markdown file is shown as text, never passed
through). Links between the Markdown files become /docs/... links, headings get GitHub's anchors
(so ``SECURITY.md#the-threat-model`` still lands), and links to files outside docs/ keep their text.
A page is looked up by name in the dictionary built here: no request path ever reaches the file
system.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml
from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict
from markupsafe import Markup

from thotbot.dashboard.templating import templates

__all__ = ["DOCS_DIR", "NavItem", "Page", "Site", "build_site", "heading_slug", "render_markdown", "site"]

#: The package's docs/: a link to the repository's docs/ in a checkout (src/thotbot/docs), the files
#: themselves in an installed wheel (package data), so `pip install .` serves every page too.
DOCS_DIR = Path(__file__).resolve().parents[1] / "docs"
REFERENCE = "reference"
#: The pages a reader needs first, in this order, with their label in the navigation.
PRIMARY = (
    ("quickstart", "Quick start"),
    ("authentication", "Authentication"),
    ("errors", "Errors"),
    ("rate-limits", "Rate limits"),
    ("user-agent", "User-Agent"),
    (REFERENCE, "API reference"),
    ("api", "The /v1 API in depth"),
    ("client", "Python client"),
    ("security", "Security"),
    ("operating", "Operating"),
)
#: Files served beside the pages (images the pages show), by name, with their media type.
ASSETS = {".svg": "image/svg+xml"}
_METHODS = ("get", "put", "post", "patch", "delete", "head", "options")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


@dataclass(frozen=True)
class NavItem:
    slug: str
    label: str

    @property
    def href(self) -> str:
        return f"/docs/{self.slug}"


@dataclass(frozen=True)
class Page:
    slug: str
    title: str
    description: str
    body: Markup


@dataclass(frozen=True)
class Site:
    """Every page, rendered whole (bytes), and the assets, by the name in their URL."""

    pages: Mapping[str, bytes]
    assets: Mapping[str, tuple[bytes, str]]
    titles: Mapping[str, str] = field(default_factory=dict)

    def find(self, name: str) -> tuple[bytes, str] | None:
        if name in self.pages:
            return self.pages[name], "text/html; charset=utf-8"
        return self.assets.get(name)


def page_slug(path: Path) -> str:
    """``RATE_LIMITS.md`` -> ``rate-limits``."""
    return path.stem.lower().replace("_", "-")


def heading_slug(text: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    kept = "".join(ch for ch in text.lower() if ch in " -_" or unicodedata.category(ch)[0] in ("L", "N"))
    return kept.replace(" ", "-")


class _Labels:
    """Unique accessible names for the scrollable regions of one page (landmarks must differ)."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def unique(self, label: str) -> str:
        count = self.seen.get(label, 0) + 1
        self.seen[label] = count
        return label if count == 1 else f"{label} ({count})"


def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable("table")
    md.add_render_rule("fence", _render_fence)
    md.add_render_rule("code_block", _render_fence)
    md.add_render_rule("table_open", _render_table_open)
    md.add_render_rule("table_close", _render_table_close)
    md.add_render_rule("th_open", _render_th_open)
    md.add_render_rule("th_close", _render_th_close)
    md.add_render_rule("td_open", _render_td_open)
    md.add_render_rule("td_close", _render_td_close)
    return md


def _region(tokens: Sequence[Token], idx: int, env: EnvType, kind: str) -> str:
    """The name of a code block or table: its kind and the section it is in, unique on the page."""
    heading = env.get("title") or "Documentation"
    for back in range(idx - 1, 0, -1):
        if tokens[back].type == "heading_close":
            heading = _inline_text(tokens[back - 1])
            break
    labels: _Labels = env["labels"]
    return escape(labels.unique(f"{kind}: {heading}"))


def _render_fence(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    token = tokens[idx]
    words = token.info.split()
    language = words[0] if words else ""
    role = words[1] if len(words) > 1 else ""
    if role == "example":
        kind, css = f"Example ({language})", "example"
    elif role == "output":
        kind, css = "Output", "output"
    else:
        kind, css = "Code", "code"
    code_class = f' class="language-{escape(language)}"' if language else ""
    # A block wider than the screen scrolls: it must take the keyboard's focus and have a name.
    return (
        f'<pre class="{css}" tabindex="0" role="region" aria-label="{_region(tokens, idx, env, kind)}">'
        f"<code{code_class}>{escape(token.content)}</code></pre>\n"
    )


def _render_table_open(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    label = _region(tokens, idx, env, "Table")
    return f'<div class="doc-table" tabindex="0" role="region" aria-label="{label}">\n<table>\n'


def _render_table_close(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    return "</table>\n</div>\n"


def _empty_cell(tokens: Sequence[Token], idx: int) -> bool:
    return idx < len(tokens) and tokens[idx].type == "inline" and not tokens[idx].content.strip()


def _render_th_open(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    # A header cell left empty (above a column of row names) heads nothing: a plain cell.
    return _cell_open("td" if _empty_cell(tokens, idx + 1) else "th", tokens[idx])


def _render_th_close(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    return "</td>\n" if _empty_cell(tokens, idx - 1) else "</th>\n"


def _render_td_open(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    if _names_its_row(tokens, idx):
        return _cell_open("th", tokens[idx], ' scope="row"')
    return _cell_open("td", tokens[idx])


def _render_td_close(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    opening = idx - 1
    while opening > 0 and tokens[opening].type != "td_open":
        opening -= 1
    return "</th>\n" if _names_its_row(tokens, opening) else "</td>\n"


def _names_its_row(tokens: Sequence[Token], idx: int) -> bool:
    """Whether the body cell at ``idx`` is its row's name: the first of its row, in a table whose
    first header cell is empty (a column of row names). It is then a row header (``th
    scope="row"``), so that every other cell of the row has a header beside the column's, as
    screen readers and the td-has-header audit (axe, Lighthouse) expect of a table."""
    if tokens[idx - 1].type != "tr_open":
        return False
    back = idx - 1
    while back > 0 and tokens[back].type != "thead_open":
        back -= 1
    # thead_open, tr_open, th_open, inline: the table's first header cell.
    return tokens[back].type == "thead_open" and _empty_cell(tokens, back + 3)


def _cell_open(tag: str, token: Token, attributes: str = "") -> str:
    """A cell; a column's alignment is a class (the CSP allows no style attribute)."""
    style = str(token.attrGet("style") or "")
    align = style.removeprefix("text-align:") if style.startswith("text-align:") else ""
    return f'<{tag}{attributes} class="align-{escape(align)}">' if align else f"<{tag}{attributes}>"


def _inline_text(token: Token) -> str:
    return "".join(child.content for child in token.children or () if child.type in ("text", "code_inline"))


def _rewrite_link(href: str, pages: Mapping[str, str]) -> str | None:
    """Where a link of a docs/ page points on the site; None for a file the site does not serve.

    ``pages`` maps a Markdown file's name (``SECURITY.md``) or an asset's to its URL."""
    if not href or href.startswith(("#", "/")) or _SCHEME.match(href):
        return href
    target, hash_, fragment = href.partition("#")
    url = pages.get(target.removeprefix("./"))
    if url is None:
        return None
    return url + (hash_ + fragment if hash_ else "")


def render_markdown(text: str, links: Mapping[str, str]) -> tuple[str, str, Markup]:
    """A Markdown page as (title, description, HTML body); ``links`` as in _rewrite_link."""
    md = _markdown()
    env: dict[str, Any] = {"labels": _Labels()}
    tokens = md.parse(text, env)
    title, description = "", ""
    anchors: dict[str, int] = {}
    for index, token in enumerate(tokens):
        if token.type == "heading_open":
            words = _inline_text(tokens[index + 1])
            slug = heading_slug(words)
            seen = anchors.get(slug, 0)
            anchors[slug] = seen + 1
            token.attrSet("id", slug if not seen else f"{slug}-{seen}")
            if token.tag == "h1" and not title:
                title = words
        elif token.type == "paragraph_open" and not description and title:
            description = _inline_text(tokens[index + 1])
        elif token.type == "inline":
            _rewrite_links(token, links)
    env["title"] = title
    description = " ".join(description.split())
    if len(description) > 160:
        description = description[:157].rsplit(" ", 1)[0] + "…"
    body = md.renderer.render(tokens, md.options, env)
    return title, description, Markup(body)  # noqa: S704 - markdown-it escapes: raw HTML is off


def _rewrite_links(token: Token, links: Mapping[str, str]) -> None:
    """Point the links and images of one inline run at the site; a link to a file the site does not
    serve (``../deploy/nginx.conf``) keeps its words, without the link."""
    dropped: list[bool] = []
    for child in token.children or ():
        if child.type == "link_open":
            href = _rewrite_link(str(child.attrGet("href") or ""), links)
            dropped.append(href is None)
            if href is None:
                child.type, child.tag, child.attrs = "file_ref_open", "span", {"class": "file-ref"}
            else:
                child.attrSet("href", href)
        elif child.type == "link_close" and dropped and dropped.pop():
            child.type, child.tag = "file_ref_close", "span"
        elif child.type == "image":
            child.attrSet("src", _rewrite_link(str(child.attrGet("src") or ""), links) or "")


def _map(value: Any) -> Mapping[str, Any]:
    """A part of the description that should be an object, or an empty one when it is not."""
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _schema_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _resolve(spec: Mapping[str, Any], item: Any) -> tuple[str | None, Any]:
    """A ``$ref`` inside the description, followed: (the component's name or None, the object)."""
    name = None
    for _ in range(10):
        if not isinstance(item, Mapping) or not isinstance(item.get("$ref"), str):
            break
        ref: str = item["$ref"]
        name = _schema_name(ref)
        target: Any = spec
        for part in ref.removeprefix("#/").split("/"):
            target = target.get(part, {}) if isinstance(target, Mapping) else {}
        item = target
    return name, item if isinstance(item, Mapping) else {}


def _schema_html(spec: Mapping[str, Any], schema: Any, depth: int = 0) -> Markup:
    """A schema as a short phrase: a link to a named schema, or its type, constants and parts."""
    if not isinstance(schema, Mapping) or depth > 4:
        return Markup("any")
    if isinstance(schema.get("$ref"), str):
        name = _schema_name(schema["$ref"])
        return Markup('<a href="#schema-{0}"><code>{0}</code></a>').format(name)
    for combinator, word in (
        ("allOf", Markup(" and ")),
        ("oneOf", Markup(" or ")),
        ("anyOf", Markup(" or ")),
    ):
        if isinstance(schema.get(combinator), list):
            parts = [_schema_html(spec, part, depth + 1) for part in schema[combinator]]
            return word.join(p for p in parts if p)
    if "const" in schema:
        return Markup("<code>{}</code>").format(_json(schema["const"]))
    if isinstance(schema.get("enum"), list):
        return Markup(" | ").join(Markup("<code>{}</code>").format(_json(v)) for v in schema["enum"])
    kind = schema.get("type")
    if kind == "array":
        return Markup("array of {}").format(_schema_html(spec, schema.get("items"), depth + 1))
    props = schema.get("properties")
    if isinstance(props, Mapping) and props:
        inner = Markup(", ").join(
            Markup("<code>{}</code>: {}").format(name, _schema_html(spec, value, depth + 1))
            for name, value in props.items()
        )
        return Markup("{} {{{}}}").format("object" if kind in (None, "object") else kind, inner)
    if isinstance(kind, list):
        kind = " or ".join(str(k) for k in kind)
    text = str(kind or "any")
    if schema.get("format"):
        text += f" ({schema['format']})"
    return Markup("{}").format(text)


def _json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _describe(md: MarkdownIt, env: dict[str, Any], text: Any) -> Markup:
    """A description (CommonMark, as OpenAPI says) as HTML."""
    if not isinstance(text, str) or not text.strip():
        return Markup("")
    return Markup(md.render(text, env))  # noqa: S704 - markdown-it escapes: raw HTML is off


def reference_context(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The OpenAPI description as the reference template takes it, whatever parts it has."""
    md = _markdown()
    env: dict[str, Any] = {"labels": _Labels(), "title": "API reference"}
    info = _map(spec.get("info"))
    default_security = spec.get("security")
    operations = []
    paths = _map(spec.get("paths"))
    for path, item in paths.items():
        _, item = _resolve(spec, item)
        shared = _list(item.get("parameters"))
        for method in _METHODS:
            op = item.get(method)
            if not isinstance(op, Mapping):
                continue
            own = _list(op.get("parameters"))
            params = []
            for raw in [*shared, *own]:
                _, param = _resolve(spec, raw)
                params.append(
                    {
                        "name": str(param.get("name", "")),
                        "where": str(param.get("in", "")),
                        "required": bool(param.get("required")),
                        "schema": _schema_html(spec, param.get("schema")),
                        "description": _describe(md, env, param.get("description")),
                    }
                )
            body = None
            if "requestBody" in op:
                body_name, request_body = _resolve(spec, op["requestBody"])
                body = {
                    "name": body_name,
                    "required": bool(request_body.get("required")),
                    "description": _describe(md, env, request_body.get("description")),
                    "content": _content(spec, request_body.get("content")),
                }
            responses = []
            raw_responses = _map(op.get("responses"))
            for status, raw in raw_responses.items():
                name, response = _resolve(spec, raw)
                # A shared response is described once, under Responses; the row links to it.
                responses.append(
                    {
                        "status": str(status),
                        "name": name,
                        "description": Markup("")
                        if name
                        else _describe(md, env, response.get("description")),
                        "content": [] if name else _content(spec, response.get("content")),
                        "headers": [] if name else list(_map(response.get("headers"))),
                    }
                )
            security = op.get("security", default_security)
            anchor = op.get("operationId") or heading_slug(f"{method} {path}".replace("/", " "))
            operations.append(
                {
                    "anchor": str(anchor),
                    "method": method.upper(),
                    "path": str(path),
                    "summary": str(op.get("summary", "")),
                    "description": _describe(md, env, op.get("description")),
                    "authenticated": bool(security),
                    "parameters": params,
                    "body": body,
                    "responses": responses,
                }
            )
    components = _map(spec.get("components"))
    raw_schemas = _map(components.get("schemas"))
    schemas = []
    for name, schema in raw_schemas.items():
        schema = schema if isinstance(schema, Mapping) else {}
        props = _map(schema.get("properties"))
        required = _list(schema.get("required"))
        schemas.append(
            {
                "name": str(name),
                "description": _describe(md, env, schema.get("description")),
                "summary": None if props else _schema_html(spec, schema),
                "properties": [
                    {
                        "name": str(prop),
                        "required": prop in required,
                        "schema": _schema_html(spec, value),
                        "description": _describe(
                            md, env, value.get("description") if isinstance(value, Mapping) else None
                        ),
                    }
                    for prop, value in props.items()
                ],
            }
        )
    shared_responses = [
        {
            "name": str(name),
            "description": _describe(md, env, _map(response).get("description")),
            "headers": list(_map(_map(response).get("headers"))),
            "content": _content(spec, _map(response).get("content")),
        }
        for name, response in _map(components.get("responses")).items()
    ]
    return {
        "responses": shared_responses,
        "api_title": str(info.get("title", "API")),
        "api_version": str(info.get("version", "")),
        "intro": _describe(md, env, info.get("description")),
        "operations": operations,
        "schemas": schemas,
    }


def _content(spec: Mapping[str, Any], content: Any) -> list[dict[str, Any]]:
    if not isinstance(content, Mapping):
        return []
    found = []
    for media_type, entry in content.items():
        schema = entry.get("schema") if isinstance(entry, Mapping) else None
        found.append({"media_type": str(media_type), "schema": _schema_html(spec, schema)})
    return found


def _load_spec() -> Mapping[str, Any]:
    text = files("thotbot").joinpath("openapi.yaml").read_text(encoding="utf-8")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    spec = yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader, C or pure Python
    return spec if isinstance(spec, Mapping) else {}


def _page_html(page: Page, nav: list[NavItem], more: list[NavItem]) -> bytes:
    template = templates.get_template("docs.html")
    html = template.render(page=page, nav=nav, more=more, section="docs")
    return html.encode("utf-8")


@functools.cache
def build_site(docs_dir: Path, spec_text: str | None = None) -> Site:
    """Every page of ``docs_dir`` and the API reference, rendered; ``spec_text`` replaces the
    packaged OpenAPI description (for tests)."""
    sources = sorted(docs_dir.glob("*.md")) if docs_dir.is_dir() else []
    links = {path.name: f"/docs/{page_slug(path)}" for path in sources}
    assets: dict[str, tuple[bytes, str]] = {}
    if docs_dir.is_dir():
        for path in sorted(docs_dir.iterdir()):
            media_type = ASSETS.get(path.suffix)
            if media_type and path.is_file():
                assets[path.name] = (path.read_bytes(), media_type)
                links[path.name] = f"/docs/{path.name}"
    pages: dict[str, Page] = {}
    for path in sources:
        title, description, body = render_markdown(path.read_text(encoding="utf-8"), links)
        slug = page_slug(path)
        pages[slug] = Page(slug, title or path.stem, description, body)
    spec = yaml.safe_load(spec_text) if spec_text is not None else _load_spec()
    context = reference_context(spec if isinstance(spec, Mapping) else {})
    body = Markup(templates.get_template("_docs_reference.html").render(**context))  # noqa: S704
    pages[REFERENCE] = Page(
        REFERENCE, "API reference", "Every /v1 operation: parameters, request bodies and responses.", body
    )
    primary = [NavItem(slug, label) for slug, label in PRIMARY if slug in pages]
    named = {slug for slug, _ in PRIMARY}
    more = sorted(
        (NavItem(slug, page.title) for slug, page in pages.items() if slug not in named),
        key=lambda item: item.label.lower(),
    )
    contents = templates.get_template("_docs_index.html").render(nav=primary, more=more, pages=pages)
    index = Page(
        "",
        "Documentation",
        "Thotbot's documentation: quick start, authentication, errors, rate limits, the API reference.",
        Markup(contents),  # noqa: S704 - an autoescaped template
    )
    rendered = {slug: _page_html(page, primary, more) for slug, page in pages.items()}
    rendered[""] = _page_html(index, primary, more)
    return Site(rendered, assets, {slug: page.title for slug, page in pages.items()})


def site() -> Site:
    """The site of this checkout's docs/, built on first use and kept for the process's life."""
    return build_site(DOCS_DIR)
