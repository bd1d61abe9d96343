# Two commands for a fresh machine: `make demo` and `make test`. Both bootstrap .venv from
# requirements.lock: the exact releases the tests passed on, each checked against its hash.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements.lock
PIP := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: demo test lint bench lock clean

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --require-hashes -r $(LOCK)
	$(PIP) install --quiet --no-deps -e .
	@# a lock older than a change to pyproject.toml's dependencies fails here: run make lock
	$(PIP) check
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/dialer demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy dialer bench
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python -m bench

# After a change to the dependencies in pyproject.toml: resolve and hash them again, for every
# platform, then commit requirements.lock. Pins that still fit are kept; to move every package
# to its newest release inside the bounds, delete requirements.lock first.
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet 'uv>=0.13,<0.14'
	$(BIN)/uv pip compile --quiet pyproject.toml --extra dev --extra postgres --universal \
		--python-version 3.11 --generate-hashes --no-emit-package voicedock-dialer \
		--output-file $(LOCK)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist *.egg-info
