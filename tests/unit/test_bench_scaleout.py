"""Workload F's arithmetic (bench/scaleout.py): the ratios its table prints and how it reads
a PostgreSQL connection's state. Its measurement itself is run by hand (README, Scaling out)."""

from __future__ import annotations

import pytest

from bench.figures import Figures
from bench.scaleout import DEPLOYMENTS, MODES, PARTS, WAITS, ActivitySampler, table


def _figures() -> Figures:
    figures = Figures()
    rates = {"sqlite1": (1000.0, 4000.0), "pg1": (800.0, 2000.0), "pg3": (400.0, 3000.0)}
    for deployment in DEPLOYMENTS:
        for (mode, _), rate in zip(MODES, rates[deployment.key], strict=True):
            key = f"{deployment.key} {mode}"
            figures[f"{key} end-to-end/s"] = rate
            figures[f"{key} create/s"] = rate * 2
            for n in range(deployment.replicas):
                figures[f"{key} replica{n} CPU %"] = 10.0 * (n + 1)
            for part in PARTS:
                figures[f"{key} {part} CPU %"] = 50.0
            figures[f"{key} machine busy %"] = 200.0
            if deployment.postgres:
                for kind in WAITS:
                    figures[f"{key} connections {kind}"] = 0.25
    return figures


def _row(text: str, label: str, occurrence: int = 0) -> list[str]:
    """The cells of the row so labelled (the CPU and connection tables share labels)."""
    lines = [line for line in text.splitlines() if line.startswith(f"| {label} |")]
    return [cell.strip() for cell in lines[occurrence].strip("|").split("|")]


def test_the_table_divides_three_replicas_by_one_and_postgresql_by_sqlite() -> None:
    text = table(_figures())

    assert _row(text, "3 replicas ÷ 1 replica (PostgreSQL)")[1:3] == ["0.50×", "1.50×"]
    assert _row(text, "PostgreSQL 1 replica ÷ SQLite")[1:3] == ["0.80×", "0.50×"]
    assert _row(text, "PostgreSQL 3 replicas ÷ SQLite")[1:3] == ["0.40×", "0.75×"]
    assert _row(text, "SQLite, 1 scheduler")[1:] == ["1,000", "4,000", "2,000", "8,000"]
    assert _row(text, "PostgreSQL, 3 replicas, single")[1] == "50 (10 / 20 / 30)"
    assert _row(text, "PostgreSQL, 1 replica, bulk")[1:] == [
        "50 (10)",
        "50",
        "50",
        "50",
        "50",
        "200",
    ]
    assert _row(text, "PostgreSQL, 1 replica, bulk", 1)[1:] == ["0.25"] * len(WAITS)


def test_a_missing_rate_prints_a_dash_not_a_ratio() -> None:
    figures = _figures()
    del figures.values["pg3 bulk end-to-end/s"]

    assert _row(table(figures), "3 replicas ÷ 1 replica (PostgreSQL)")[2] == "—"


@pytest.mark.parametrize(
    ("state", "wait_type", "wait", "kind"),
    [
        ("active", "Lock", "transactionid", "lock wait"),
        ("active", "Lock", "tuple", "lock wait"),
        ("active", "IO", "WALSync", "WAL flush"),
        ("idle in transaction", "Client", "ClientRead", "in transaction, idle"),
        ("active", None, None, "in transaction, working"),
        ("idle", "Client", "ClientRead", None),
    ],
)
def test_connection_states_are_classified(
    state: str, wait_type: str | None, wait: str | None, kind: str | None
) -> None:
    assert ActivitySampler._classify(state, wait_type, wait) == kind
