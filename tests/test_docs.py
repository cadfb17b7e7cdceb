"""README and docs/ stand alone: every file they name exists; nothing points outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
#: Where a path in backquotes may be relative to: the repository, the package, docs/.
BASES = [ROOT, ROOT / "src" / "thotbot", ROOT / "docs", ROOT / "tests"]
#: A path in backquotes: `dir/name.ext`, `name.py`, or `dir/` (optionally with ::test or #anchor).
PATH = re.compile(
    r"`((?:[\w.-]+/)*[\w.-]+\.(?:py|md|html|conf|yaml|toml|txt|lock|js|css)|(?:[\w-]+/)+)(?:::[\w\[\]-]+)?`"
)
#: A test named by its node id: `tests/path.py::test_name`.
TEST_ID = re.compile(r"`(tests/[\w/]+\.py)::(\w+)")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
OUTSIDE = re.compile(r"\.\./shared|/work/|CONTRACT\.md|STYLE\.md", re.IGNORECASE)


def _named_paths(text: str) -> set[str]:
    return {m.group(1) for m in PATH.finditer(text)}


#: Made by running the project, not kept in the repository.
GENERATED = ("var/", ".venv/")


def _exists(name: str, page: Path) -> bool:
    if name.startswith(GENERATED):
        return True
    bases = [page.parent, *BASES]
    return any((base / name).exists() for base in bases) or any(
        next(base.rglob(name), None) is not None for base in (ROOT / "src" / "thotbot", ROOT / "tests")
    )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_file_a_page_names_exists(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    if page.name == "CHANGELOG.md":
        # The changelog names what was, as well as what is; only its links must resolve.
        names: set[str] = set()
    else:
        names = _named_paths(text)
    names |= {m.group(1) for m in LINK.finditer(text) if "://" not in m.group(1)}
    missing = sorted(n for n in names if not _exists(n, page))
    assert not missing, f"{page.name} names files that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_test_a_page_names_exists(page: Path) -> None:
    if page.name == "CHANGELOG.md":
        return
    missing = []
    for file, name in TEST_ID.findall(page.read_text(encoding="utf-8")):
        path = ROOT / file
        if not path.exists() or not re.search(
            rf"^(?:    )?(?:async def|def|class) {name}\b", path.read_text(), re.M
        ):
            missing.append(f"{file}::{name}")
    assert not missing, f"{page.name} names tests that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_page_points_outside_the_repository(page: Path) -> None:
    found = OUTSIDE.findall(page.read_text(encoding="utf-8"))
    assert not found, f"{page.name} points outside the repository: {found}"


def test_the_check_finds_a_missing_file() -> None:
    assert _named_paths("see `storage/no_such_store.py` and `core/keys.py`") == {
        "storage/no_such_store.py",
        "core/keys.py",
    }
    assert not _exists("storage/no_such_store.py", ROOT / "README.md")
    assert _exists("core/keys.py", ROOT / "README.md")
