# Thotbot: `make run` serves on http://localhost:8000, `make test` runs the whole suite.
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
T ?= tests
# Every package, direct or indirect, pinned with its hashes: `make lock` writes it from pyproject.toml.
LOCK := requirements.lock
LOCKFLAGS ?=
# npm ci writes this file last: the tests' Node.js tools are whole once it is there.
NODE_TOOLS := tests/node/node_modules/.package-lock.json
# pytest's worker processes (pytest-xdist); each test file runs whole in one of them. JOBS=0: none.
# Four on two cores: most of the suite's wall time is servers starting and outages waited out, not CPU.
JOBS ?= 4

# The suite under coverage (subprocesses included, see [tool.coverage] in pyproject.toml); the floor
# (fail_under) holds for the whole suite only, so a part (T=tests/api) reports without failing.
PYTEST_COV = --cov --cov-report=term-missing:skip-covered --cov-report=json:var/coverage.json \
	-p tests.coverage_totals $(if $(filter tests,$(T)),,--cov-fail-under=0)
# CI (CI=true) runs the whole suite under coverage in `make test`, so the floor holds on every change.
ifeq ($(CI)$(T),truetests)
TEST_COV = $(PYTEST_COV)
endif

.DEFAULT_GOAL := help
.PHONY: help run test lint check fmt cov lock bench bench-keys clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# One locked environment for every target; `pip check` fails when pyproject.toml asks for something
# the lock lacks (run `make lock` then). --no-deps: the lock lists every package, pinned and hashed,
# so pip installs it as it is instead of resolving again; resolving, the pip a new venv comes with
# (23.2) looked for pytest-cov's `coverage[toml]` on the index, found a newer release than the
# lock's, and refused the install.
$(VENV)/.installed: $(LOCK) pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --no-deps -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m pip check
	touch $@

# The tests' Node.js tools (Lighthouse, Redocly's linter), from their lock file (npm's registry). Without
# npm the target says so and their tests skip (fail under CI=true, whose .ci/run installs npm).
$(NODE_TOOLS): tests/node/package-lock.json
	@if command -v npm >/dev/null; then npm ci --prefix tests/node --no-audit --no-fund --loglevel=error; \
	else echo "npm not found: the Lighthouse and Redocly tests will skip"; fi

run: $(VENV)/.installed ## install from requirements.lock, migrate the SQLite database, serve on http://localhost:8000
	$(VENV)/bin/thotbot serve --host $(HOST) --port $(PORT)

test: check $(NODE_TOOLS) ## `make check`, then the tests (T=tests/path for part); CI=true: under coverage, with its floor
	$(PY) -m pytest -n $(JOBS) --dist loadfile --durations=25 $(TEST_COV) $(T)

cov: $(VENV)/.installed ## the tests under coverage, servers too: lines and branches missed; fails under the floor
	$(PY) -m pytest $(PYTEST_COV) $(T)

lint: fmt ## `make fmt`, then type-check with mypy
	$(VENV)/bin/mypy

fmt: $(VENV)/.installed ## fix what ruff can fix, then format with ruff
	$(VENV)/bin/ruff check --fix src tests bench
	$(VENV)/bin/ruff format src tests bench

check: $(VENV)/.installed ## ruff and its format check without fixing, mypy, then the import layers (lint-imports)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

lock: ## re-pin requirements.lock from pyproject.toml (LOCKFLAGS=--upgrade: newest indirect packages)
	test -x $(PY) || python3 -m venv $(VENV)
	test -x $(VENV)/bin/pip-compile || $(PY) -m pip install --quiet -r $(LOCK)
	$(VENV)/bin/pip-compile --quiet --extra dev --generate-hashes --allow-unsafe --strip-extras \
		--no-emit-index-url --no-emit-find-links $(LOCKFLAGS) --output-file $(LOCK) pyproject.toml

bench: $(VENV)/.installed ## /v1/version: req/s, p50/p99, CPU/req of bare Starlette, FastAPI and Thotbot
	$(PY) bench/auth_throughput.py

bench-keys: $(VENV)/.installed ## the same against keys in store and in use: bench/results/, docs/keys_sweep.svg
	$(PY) bench/keys_sweep.py

clean: ## remove the virtualenv, local data and coverage files
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.*
