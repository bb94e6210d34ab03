# Zyron: `make run` serves on the embedded default, `make test` runs the whole suite and the linters.
# Needs only python3 (3.11+), git and make: the first call creates .venv from the lock file.

PYTHON ?= python3
VENV := .venv
UV_DIR := .uv
UV := $(UV_DIR)/bin/uv
UV_VERSION := 0.13.9
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

LITELLM_VENV := bench/litellm/.venv

# The `local` extra (llama.cpp prebuilt by xllamacpp, and the SmolLM2 model: docs/local-model.md)
# is installed by default so a fresh checkout chats offline; LOCAL_MODEL=0 (on the command line
# or in the environment) leaves it out. LOCAL_RUNTIME=llama-cpp-python installs that runtime
# too (it compiles llama.cpp: minutes), and the server, reading the same variable, uses it
# (make passes command-line variables to the commands' environment; none is set otherwise, so
# a LOCAL_RUNTIME in .env still reaches the server).
LOCAL_MODEL ?= 1
SYNC_EXTRAS := $(if $(filter 0 false no off,$(LOCAL_MODEL)),,--extra local \
	$(if $(filter llama-cpp-python,$(LOCAL_RUNTIME)),--extra llama-cpp-python))

.PHONY: run test test-stress test-deploy test-local test-llama-cpp-python node-packages lint typecheck format install clean help bench bench-quick

help:
	@echo "make run      serve on http://127.0.0.1:8000 (SQLite in ZYRON_DATA_DIR, default ./data)"
	@echo "make test     the whole test suite, ruff and mypy --strict"
	@echo "make lint     ruff and mypy only"
	@echo "make test-stress  the long stress variants (CI runs them after make test)"
	@echo "make test-deploy  HAProxy in front of three replicas, docs/deploy.md (CI runs them too)"
	@echo "make test-local   the tests that run the local model (CI runs them too)"
	@echo "make test-llama-cpp-python  the same on llama-cpp-python (compiles it once)"
	@echo "LOCAL_MODEL=0     with any target: install without the local model"
	@echo "LOCAL_RUNTIME=llama-cpp-python  with any target: that runtime too (compiles llama.cpp)"
	@echo "make bench    the benchmarks (about 40 min); rewrites docs/benchmarks.md"
	@echo "make bench-quick  a 2-minute check of the same scenarios, printed only"

# uv installs the locked dependencies; it is bootstrapped with the system's pip into .uv/.
$(UV):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Zyron needs Python 3.11 or newer (set PYTHON=python3.11)")'
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --target $(UV_DIR) uv==$(UV_VERSION)

# Synced on every call, not behind a stamp file: a stamp would let a run with the local extra
# be skipped after one without it. With nothing to change it takes about 0.03 s.
install: $(UV)
	@$(UV) sync --frozen --python $(PYTHON) $(SYNC_EXTRAS)

# Serving needs neither the development group nor an exact sync: a first `make run` downloads
# only what the server imports, and a later one leaves the test tools where they are.
run: $(UV)
	@$(UV) sync --frozen --python $(PYTHON) $(SYNC_EXTRAS) --no-dev --inexact
	$(VENV)/bin/zyron serve

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

# The real AI SDK clients the tests drive (tests/node), from their lock file. Without npm the
# tests that need them skip, saying why (and fail in CI).
NODE_MODULES := tests/node/node_modules/.package-lock.json
$(NODE_MODULES): tests/node/package.json tests/node/package-lock.json
	npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
node-packages:
	@if command -v npm >/dev/null; then $(MAKE) --no-print-directory $(NODE_MODULES); \
	else echo "npm not found: the AI SDK client tests will skip (Debian: apt install npm)"; fi

test: install lint node-packages
	$(VENV)/bin/pytest

test-stress: install
	$(VENV)/bin/pytest -m stress

# The deployment of docs/deploy.md: Debian's haproxy, three replicas, Postgres and Redis.
test-deploy: install
	$(VENV)/bin/pytest -m deploy

test-local: install
	$(VENV)/bin/pytest -m local_model

test-llama-cpp-python: $(UV)
	@$(UV) sync --frozen --python $(PYTHON) --extra local --extra llama-cpp-python
	LOCAL_RUNTIME=llama-cpp-python $(VENV)/bin/pytest -m "local_model and not xllamacpp" \
		tests/llm/test_local.py

format: install
	$(VENV)/bin/ruff format src tests bench
	$(VENV)/bin/ruff check --fix src tests bench

# LiteLLM, the peer the benchmarks compare against, in a locked virtualenv of its own.
$(LITELLM_VENV)/.synced: $(UV) bench/litellm/pyproject.toml bench/litellm/uv.lock
	UV_PROJECT_ENVIRONMENT=$(CURDIR)/$(LITELLM_VENV) $(UV) sync --frozen --project bench/litellm --python $(PYTHON)
	@touch $@

bench: install $(LITELLM_VENV)/.synced
	$(VENV)/bin/python -m bench

bench-quick: install $(LITELLM_VENV)/.synced
	$(VENV)/bin/python -m bench --quick

clean:
	rm -rf $(VENV) $(UV_DIR) $(LITELLM_VENV) tests/node/node_modules .mypy_cache .pytest_cache .ruff_cache
