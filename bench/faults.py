"""The fault suite with the long profile (``FAULT_PROFILE=long``): more tasks, more seeds,
more kills and power cuts than CI's short profile. Not run in CI; it takes a while.

    python bench/faults.py [extra pytest arguments, e.g. -k power_cut]

Prints each test's figures (pytest ``-s``) and pytest's summary; exits with pytest's status.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    command = [
        sys.executable, "-m", "pytest", "tests/faults",
        "-q", "-s", "-p", "no:cacheprovider",
        # The long runs outlast the suite's default per-test limit.
        "-o", "timeout=7200",
        *sys.argv[1:],
    ]  # fmt: skip
    environment = {**os.environ, "FAULT_PROFILE": "long"}
    print("$ FAULT_PROFILE=long " + " ".join(command[1:]), flush=True)
    return subprocess.call(command, cwd=ROOT, env=environment)


if __name__ == "__main__":
    sys.exit(main())
