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

.PHONY: run test test-stress lint typecheck format install clean help bench bench-quick

help:
	@echo "make run      serve on http://127.0.0.1:8000 (SQLite in ZYRON_DATA_DIR, default ./data)"
	@echo "make test     the whole test suite, ruff and mypy --strict"
	@echo "make lint     ruff and mypy only"
	@echo "make test-stress  the long stress variants (CI runs them after make test)"
	@echo "make bench    the benchmarks (about 40 min); rewrites docs/benchmarks.md"
	@echo "make bench-quick  a 2-minute check of the same scenarios, printed only"

# uv installs the locked dependencies; it is bootstrapped with the system's pip into .uv/.
$(UV):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Zyron needs Python 3.11 or newer (set PYTHON=python3.11)")'
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --target $(UV_DIR) uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --python $(PYTHON)
	@touch $@

install: $(VENV)/.synced

run: install
	$(VENV)/bin/zyron serve

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

test: install lint
	$(VENV)/bin/pytest

test-stress: install
	$(VENV)/bin/pytest -m stress

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
	rm -rf $(VENV) $(UV_DIR) $(LITELLM_VENV) .mypy_cache .pytest_cache .ruff_cache
