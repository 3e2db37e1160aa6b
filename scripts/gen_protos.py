"""Regenerate the Python code for ``proto/orchestrator/v1/*.proto``.

The ``.proto`` files live in ``proto/orchestrator/v1/``, which is also the source folder
of the generated package ``orchestrator.v1``: protoc writes ``*_pb2.py``, ``*_pb2_grpc.py``
and their ``.pyi`` stubs (mypy-protobuf) next to the contract, so the generated imports
(``from orchestrator.v1 import task_pb2``) resolve with no ``sys.path`` trick.

Usage::

    python scripts/gen_protos.py          # rewrite the generated files
    python scripts/gen_protos.py --check  # exit 1 if they are stale (used by the tests)

The output depends on the grpcio-tools and mypy-protobuf versions, which the ``dev`` extra
pins exactly for that reason.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PACKAGE_DIR = PROTO_ROOT / "orchestrator" / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def _plugin(name: str) -> str:
    """Path of a protoc plugin installed beside this interpreter (mypy-protobuf's)."""
    path = Path(sysconfig.get_path("scripts")) / name
    if not path.exists():
        found = shutil.which(name)
        if found is None:
            raise SystemExit(f"{name} not found: pip install -e '.[dev]'")
        return found
    return str(path)


def generate(out_dir: Path) -> list[Path]:
    """Run protoc for every contract file into ``out_dir``; return the files written."""
    protos = sorted(PACKAGE_DIR.glob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *(str(p.relative_to(PROTO_ROOT)) for p in protos),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    gen_dir = out_dir / "orchestrator" / "v1"
    return sorted(p for p in gen_dir.iterdir() if p.name.endswith(GENERATED_SUFFIXES))


def stale_files() -> list[str]:
    """Names of generated files that differ from what protoc makes now (or are missing)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        fresh_names = {p.name for p in fresh}
        current = {p.name for p in PACKAGE_DIR.iterdir() if p.name.endswith(GENERATED_SUFFIXES)}
        stale = sorted(current ^ fresh_names)
        for path in fresh:
            committed = PACKAGE_DIR / path.name
            if committed.exists() and not filecmp.cmp(path, committed, shallow=False):
                stale.append(path.name)
        return sorted(set(stale))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if generated code is stale")
    args = parser.parse_args()
    if args.check:
        stale = stale_files()
        if stale:
            print("stale generated files (run python scripts/gen_protos.py):", *stale)
            return 1
        print("generated code is up to date")
        return 0
    for old in PACKAGE_DIR.iterdir():
        if old.name.endswith(GENERATED_SUFFIXES):
            old.unlink()
    written = generate(PROTO_ROOT)
    print(f"wrote {len(written)} files to {PACKAGE_DIR.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
