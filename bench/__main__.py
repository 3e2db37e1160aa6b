"""``python -m bench``: this scheduler and its peers, the same workloads, side by side.

    python -m bench                       # every system and workload; medians of 3 runs
    python -m bench --quick               # smaller workloads, one run: a smoke test
    python -m bench --systems orchestrator,huey --workloads A1,B --runs 1

The peers come from the ``bench`` extra (``pip install -e '.[bench]'``); Redis is Debian's
``redis-server``, installed on first use. Every run starts the system afresh with an empty
queue; each figure is the median over ``--runs`` runs. Ratios compare task-orchestrator
with each peer: how many times its throughput, or how many times lower its latency.
Workloads D (1,000,000 stored tasks) and E (1,000 worker streams) are task-orchestrator's
alone, measured once: their figures answer to the targets in the README, not to a peer.
Workload F (scaling out) is ours alone too, measured ``--runs`` times: SQLite, one
PostgreSQL replica and three side by side, on a PostgreSQL server the bench starts.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from bench.figures import Figures, median_of
from bench.systems import SYSTEMS
from bench.workloads import WORKLOADS, Sizes

OURS = "orchestrator"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small workloads, one run")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    systems = [name.strip() for name in args.systems.split(",") if name.strip()]
    workloads = [name.strip().upper() for name in args.workloads.split(",") if name.strip()]
    for name in systems:
        if name not in SYSTEMS:
            parser.error(f"unknown system {name!r}; known: {', '.join(SYSTEMS)}")
    for name in workloads:
        if name not in WORKLOADS:
            parser.error(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}")
    sizes = Sizes.quick() if args.quick else Sizes()
    runs = 1 if args.quick else args.runs
    print("$ python -m bench " + " ".join(sys.argv[1:]), flush=True)

    results: dict[str, dict[str, Figures]] = {w: {} for w in workloads}
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        for name in systems:
            workdir = Path(scratch) / name
            workdir.mkdir()
            system = SYSTEMS[name](workdir, workdir / "starts")
            system.setup()
            try:
                for workload in workloads:
                    spec = WORKLOADS[workload]
                    if spec.ours_only and name != OURS:
                        continue
                    measured = []
                    once = spec.ours_only and not spec.repeated
                    for run in range(1 if once else runs):
                        if spec.prepare is not None:
                            spec.prepare(system, sizes)
                        if not spec.own_processes:
                            system.start()
                        try:
                            figures = spec.run(system, sizes)
                        finally:
                            system.stop()
                        shown = _headline(figures, spec.headline) if spec.table else figures
                        print(f"  {system.name:<18} {workload} run {run + 1}: {_line(shown)}")
                        measured.append(figures)
                    results[workload][name] = median_of(measured)
            finally:
                system.close()
            time.sleep(1)  # let the machine settle between systems

    print()
    for workload in workloads:
        if results[workload]:
            print(_table(workload, results[workload]))
    if args.json:
        args.json.write_text(
            json.dumps(
                {w: {s: f.values for s, f in by.items()} for w, by in results.items()}, indent=2
            )
        )
    return 0


def _headline(figures: Figures, headline: str) -> Figures:
    """Only the headline figures (a workload with its own table measures dozens)."""
    return Figures({k: v for k, v in figures.values.items() if k.endswith(headline)})


def _line(figures: Figures) -> str:
    return ", ".join(f"{name} {value:,.1f}" for name, value in figures.values.items())


def _table(workload: str, by_system: dict[str, Figures]) -> str:
    names = sorted({n for f in by_system.values() for n in f.values if n != "started"})
    spec = WORKLOADS[workload]
    headline, higher_better = spec.headline, spec.higher_better
    ours = by_system.get(OURS)
    once = spec.ours_only and not spec.repeated
    lines = [f"{spec.title} ({'one run' if once else 'medians'})", ""]
    if spec.table is not None and ours is not None:
        return "\n".join(lines) + "\n" + spec.table(ours)
    header = ["system", *names]
    if not spec.ours_only:
        header.append(f"ours vs it ({headline})")
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for name, figures in by_system.items():
        cells = [SYSTEMS[name].name]
        for figure in names:
            value = figures.values.get(figure)
            cells.append("—" if value is None else f"{value:,.1f}")
        if not spec.ours_only:
            cells.append(_ratio(ours, name, figures, headline, higher_better))
        lines.append("| " + " | ".join(cells) + " |")
    for name, figures in by_system.items():
        for note in figures.notes:
            lines.append(f"- {SYSTEMS[name].name}: {note}")
    return "\n".join(lines) + "\n"


def _ratio(
    ours: Figures | None, name: str, figures: Figures, headline: str, higher_better: bool
) -> str:
    """Ours against this system on the headline figure (empty on our own row)."""
    if ours is None or name == OURS or headline not in figures.values:
        return ""
    mine, theirs = ours.values[headline], figures.values[headline]
    ratio = (mine / theirs) if higher_better else (theirs / mine if mine else 0.0)
    return f"{ratio:.1f}×"


if __name__ == "__main__":
    sys.exit(main())
