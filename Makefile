# Development loop: `make all` = lint + types + tests. Assumes the venv made by the README's
# test command (.venv); override with `make PY=python3 ...`.
PY ?= .venv/bin/python

.PHONY: all lint types test test-fast protos check-protos config-table

all: lint types test

lint:
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

types:
	$(PY) -m mypy

test:
	$(PY) -m pytest

# Unit and in-process integration tiers only (no subprocess clusters).
test-fast:
	$(PY) -m pytest tests/unit tests/integration

protos:
	$(PY) scripts/gen_protos.py

check-protos:
	$(PY) scripts/gen_protos.py --check

config-table:
	$(PY) scripts/config_table.py
