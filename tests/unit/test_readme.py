"""The README's configuration tables are generated from the real option parsers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_configuration_tables_match_the_parsers() -> None:
    spec = importlib.util.spec_from_file_location(
        "config_table", ROOT / "scripts" / "config_table.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.readme_section() == module.render(), (
        "README configuration is stale: python scripts/config_table.py --write"
    )


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/pytest"
    assert command in readme
    assert command in ci.splitlines(), "CI must run the README's test command verbatim"
