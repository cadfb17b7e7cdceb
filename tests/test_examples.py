"""Every runnable example of README.md and docs/*.md, run against a real `thotbot serve`.

The convention is in docs/DEVELOPING.md: a fenced block whose info string is ``sh example``,
``js example`` or ``python example`` is run as a user would run it (the key in THOTBOT_API_KEY,
http://localhost:8000 rewritten to the live server), and the ``json output`` or ``text output``
block right after it is the answer it must give. A failing example fails its test; nothing skips it
but a missing interpreter outside CI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt

from tests.live import LiveServer, start_server
from tests.services import missing_service
from thotbot.config import load_settings
from thotbot.core.accounts import hash_password
from thotbot.core.identity import Actor
from thotbot.services import Services, build_services

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DOCUMENTED_URL = "http://localhost:8000"
ANY = "…"
EMAIL = "you@example.com"
#: How each language runs: the interpreter, and the file name the example is written to.
RUNNERS = {
    "sh": (("bash", "-e", "-o", "pipefail"), "example.sh"),
    "js": (("node",), "example.mjs"),
    "python": ((sys.executable,), "example.py"),
}
TIMEOUT = 120


@dataclass(frozen=True)
class Example:
    source: str
    line: int
    language: str
    code: str
    #: "json" or "text" when an output block follows, else None.
    output_kind: str | None = None
    output: str = ""

    @property
    def name(self) -> str:
        return f"{self.source}:{self.line}:{self.language}"


def extract(text: str, source: str) -> list[Example]:
    """The examples of one Markdown file, each with the output block that directly follows it."""
    tokens = MarkdownIt("commonmark").parse(text)
    found = []
    for index, token in enumerate(tokens):
        words = token.info.split() if token.type == "fence" else []
        if len(words) < 2 or words[1] != "example":
            continue
        output_kind, output = None, ""
        after = index + 1
        while after < len(tokens) and tokens[after].type.endswith("_close"):
            after += 1
        if after < len(tokens) and tokens[after].type == "fence":
            info = tokens[after].info.split()
            if len(info) == 2 and info[1] == "output" and info[0] in ("json", "text"):
                output_kind, output = info[0], tokens[after].content
        line = token.map[0] + 1 if token.map else 0
        found.append(Example(source, line, words[0], token.content, output_kind, output))
    return found


def all_examples() -> list[Example]:
    return [
        example
        for path in SOURCES
        for example in extract(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    ]


def json_mismatches(expected: Any, actual: Any, where: str = "$") -> list[str]:
    """How ``actual`` differs from the documented ``expected`` (empty when it matches)."""
    if expected == ANY:
        return []
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: expected an object, got {actual!r}"]
        problems = []
        for key, value in expected.items():
            if key not in actual:
                problems.append(f"{where}.{key}: missing")
            else:
                problems += json_mismatches(value, actual[key], f"{where}.{key}")
        return problems
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{where}: expected a list of {len(expected)}, got {actual!r}"]
        return [
            p
            for i, (e, a) in enumerate(zip(expected, actual, strict=True))
            for p in json_mismatches(e, a, f"{where}[{i}]")
        ]
    # true is not 1: compare the JSON types too.
    if type(expected) is not type(actual) or expected != actual:
        return [f"{where}: expected {expected!r}, got {actual!r}"]
    return []


def text_mismatch(expected: str, actual: str) -> str | None:
    """The first documented line not found in ``actual`` (in order), or None."""
    position = 0
    for line in expected.splitlines():
        if not line.strip():
            continue
        pattern = ".*?".join(re.escape(part) for part in line.strip().split(ANY))
        match = re.compile(pattern).search(actual, position)
        if match is None:
            return line
        position = match.end()
    return None


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


def run_example(example: Example, workdir: Path, url: str, key: str) -> Run:
    """Run one example as a user would: the key only in the environment, never on a command line."""
    if example.language not in RUNNERS:
        pytest.fail(f"{example.name}: no runner for '{example.language} example' (use sh, js or python)")
    command, filename = RUNNERS[example.language]
    if shutil.which(command[0]) is None:
        missing_service(f"{command[0]} is not installed: it runs the {example.language} examples")
    script = workdir / filename
    script.write_text(example.code.replace(DOCUMENTED_URL, url), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("THOTBOT_")}
    env.update(THOTBOT_API_KEY=key, THOTBOT_API_URL=url)
    # As after `pip install thotbot` in the user's environment: its `thotbot` command on the PATH.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    done = subprocess.run(
        [*command, str(script)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )

    def hide(text: str) -> str:
        # Whatever an example printed, its key stays out of the test report.
        return text.replace(key, "[the example's key]") if key else text

    return Run(done.returncode, hide(done.stdout), hide(done.stderr))


def check(example: Example, run: Run) -> None:
    """The example exited 0 and printed its documented answer."""
    said = f"{example.name}\n--- stdout\n{run.stdout}\n--- stderr\n{run.stderr}"
    assert run.returncode == 0, f"exited {run.returncode}: {said}"
    if example.output_kind == "json":
        try:
            actual = json.loads(run.stdout)
        except ValueError:
            pytest.fail(f"the output is not JSON: {said}")
        problems = json_mismatches(json.loads(example.output), actual)
        assert not problems, f"{problems}: {said}"
    elif example.output_kind == "text":
        missing = text_mismatch(example.output, run.stdout)
        assert missing is None, f"the output lacks the documented line {missing!r}: {said}"


@dataclass
class Live:
    server: LiveServer
    services: Services
    account_id: str

    def fresh_key(self, name: str) -> str:
        raw, _ = self.services.key_lifecycle.create(self.account_id, name[:100], Actor.operator())
        return raw


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    workdir = tmp_path_factory.mktemp("examples")
    url = f"sqlite:///{workdir / 'thotbot.db'}"
    server = start_server(workdir, {"THOTBOT_DATABASE_URL": url})
    # The server migrated the database; this process makes the account and keys, as the CLI would.
    services = build_services(load_settings(database_url=url))
    try:
        account = services.users.create(EMAIL, hash_password("a-long-password"))
        yield Live(server, services, account.id)
    finally:
        services.mailer.close()  # the notices of the keys made: written to this process's log
        services.key_changes.close()
        services.engine.dispose()
        server.stop()


EXAMPLES = all_examples()


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_example(example: Example, live: Live, tmp_path: Path) -> None:
    key = live.fresh_key(f"example {example.name}")
    check(example, run_example(example, tmp_path, live.server.url, key))


def test_examples_are_found_in_every_language() -> None:
    languages = {e.language for e in EXAMPLES}
    assert {"sh", "js"} <= languages, languages
    assert all(e.language in RUNNERS for e in EXAMPLES), [
        e.name for e in EXAMPLES if e.language not in RUNNERS
    ]


PAGE = """\
# A page

```sh example
echo '{"status": 401, "code": "missing_api_key", "extra": [1, 2]}'
```

```json output
{"code": "missing_api_key", "status": 401, "extra": [1, "…"]}
```

```sh
echo 'plain: not run'
```

Indented, so code and not a fence:

    ```sh example
    indented
    ```

- In a list:

  ```js example
  console.log("a\\nb c d")
  ```

  ```text output
  a
  b … d
  ```

```ruby example
puts 1
```
"""


def test_extract_pairs_examples_with_their_output() -> None:
    found = extract(PAGE, "PAGE.md")
    assert [(e.language, e.line, e.output_kind) for e in found] == [
        ("sh", 3, "json"),
        ("js", 23, "text"),
        ("ruby", 32, None),
    ]
    assert found[1].code == 'console.log("a\\nb c d")\n'


def test_the_matchers() -> None:
    assert (
        json_mismatches({"a": "…", "b": [1, {"c": 2}]}, {"a": None, "b": [1, {"c": 2, "d": 3}], "e": 4}) == []
    )
    assert json_mismatches({"a": 1}, {"a": True}) == ["$.a: expected 1, got True"]
    assert json_mismatches({"a": [1]}, {"a": [1, 2]}) == ["$.a: expected a list of 1, got [1, 2]"]
    assert json_mismatches({"a": {"b": 1}}, {"a": {}}) == ["$.a.b: missing"]
    assert text_mismatch("x: …\n\nz", "w\nx: 12\ny\nz\n") is None
    assert text_mismatch("z\nx: …", "x: 1\nz\n") == "x: …"  # in order


def test_a_wrong_answer_or_a_failing_example_fails(tmp_path: Path) -> None:
    """The runner's own check: without it every example would pass whatever it printed."""
    wrong = Example("t.md", 1, "sh", 'echo \'{"code": "not_found"}\'\n', "json", '{"code": "rate_limited"}')
    with pytest.raises(AssertionError, match="rate_limited"):
        check(wrong, run_example(wrong, tmp_path, "http://127.0.0.1:9", ""))
    failing = Example("t.md", 1, "sh", "false\necho done\n")
    with pytest.raises(AssertionError, match="exited 1"):
        check(failing, run_example(failing, tmp_path, "http://127.0.0.1:9", ""))
    text = Example("t.md", 1, "sh", "echo hello\n", "text", "hello\nworld\n")
    with pytest.raises(AssertionError, match="world"):
        check(text, run_example(text, tmp_path, "http://127.0.0.1:9", ""))
    rewritten = Example("t.md", 1, "sh", f'test "{DOCUMENTED_URL}/v1" = "http://127.0.0.1:9/v1"\n')
    check(rewritten, run_example(rewritten, tmp_path, "http://127.0.0.1:9", ""))


def test_an_unknown_language_fails(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match="no runner"):
        run_example(Example("t.md", 1, "ruby", "puts 1\n"), tmp_path, "http://127.0.0.1:9", "")
