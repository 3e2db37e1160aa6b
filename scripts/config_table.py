"""Print the configuration tables of the README from the real option parsers.

The README's "Configuration" section is this script's output between the markers
``<!-- config:start -->`` and ``<!-- config:end -->``; ``tests/unit/test_readme.py`` fails
when they drift apart. Regenerate with ``python scripts/config_table.py --write``.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
START, END = "<!-- config:start -->", "<!-- config:end -->"


def _rows(parser: argparse.ArgumentParser) -> list[str]:
    rows = []
    for action in parser._actions:
        longs = [o for o in action.option_strings if o.startswith("--")]
        if not longs or action.help == argparse.SUPPRESS or longs[0] == "--help":
            continue
        help_text = action.help or ""
        env = re.search(r"\[env (\w+)\]", help_text)
        help_text = re.sub(r"\s*\[env \w+\]", "", help_text).replace("|", "\\|")
        default = action.default
        if isinstance(default, (list, tuple)):
            default = ",".join(map(str, default))
        if isinstance(default, bool):
            default = "on" if default else "off"
        if default is None:
            default = ""
        # Defaults computed on the machine that prints them:
        if longs[0] == "--worker-id":
            default = "<hostname>-<pid>"
        if longs[0] == "--cpu-workers":
            default = "<CPU count>"
        if longs[0] == "--scheduler-id":
            default = "<hostname>-<pid>-<4 hex digits>"
        shown = f"`{default}`" if default != "" else "(empty)"
        rows.append(f"| `{longs[0]}` | `{env.group(1)}` | {shown} | {help_text} |" if env else
                    f"| `{longs[0]}` | — | {shown} | {help_text} |")  # fmt: skip
    return rows


def render() -> str:
    from scheduler_service.config import build_parser as scheduler_parser
    from worker_service.config import build_parser as worker_parser

    header = ["| flag | environment | default | meaning |", "|---|---|---|---|"]
    parts = [
        "In a `--config` file, an option's key is its flag without the dashes "
        "(`lease-ttl` or `lease_ttl`); every option below but `--config` may be there.",
        "",
        "**Scheduler** (`orchestrator-scheduler`)",
        "",
        *header,
        *_rows(scheduler_parser({})),
        "",
        "**Worker** (`orchestrator-worker`)",
        "",
        *header,
        *_rows(worker_parser({})),
    ]
    return "\n".join(parts)


def readme_section() -> str:
    text = README.read_text()
    return text[text.index(START) + len(START) : text.index(END)].strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="rewrite the README section")
    args = parser.parse_args()
    table = render()
    if not args.write:
        print(table)
        return 0
    text = README.read_text()
    start, end = text.index(START) + len(START), text.index(END)
    README.write_text(text[:start] + "\n" + table + "\n" + text[end:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
