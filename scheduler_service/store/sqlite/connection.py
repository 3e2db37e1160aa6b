"""Opening SQLite connections and migrating the schema.

Every connection gets the same pragmas: WAL (readers never block the writer, and several
processes can share the file), a busy timeout so writers of several scheduler processes
queue instead of failing, and the durability level of ``--sqlite-synchronous``. FULL (the
default) syncs the WAL on every commit, so an acknowledged create survives power loss;
group commit keeps that affordable by syncing once for many callers.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
from importlib import resources
from pathlib import Path

import aiosqlite

from .inline import BUSY_TIMEOUT_MS, InlineConnection

log = logging.getLogger(__name__)

SYNCHRONOUS_LEVELS = ("FULL", "NORMAL")
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def pragmas(synchronous: str) -> list[str]:
    """What every connection sets first (see the module's docstring)."""
    if synchronous not in SYNCHRONOUS_LEVELS:
        raise ValueError(f"synchronous must be one of {SYNCHRONOUS_LEVELS}")
    return [
        f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}",
        "PRAGMA journal_mode = WAL",
        f"PRAGMA synchronous = {synchronous}",
        "PRAGMA temp_store = MEMORY",
        "PRAGMA cache_size = -32000",
    ]


def prepare_file(path: str) -> None:
    """Make the folder, and the file 0600, before SQLite creates anything."""
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        create_private(path)


async def connect(path: str, synchronous: str = "FULL") -> aiosqlite.Connection:
    settings = pragmas(synchronous)
    prepare_file(path)
    # isolation_level=None: the store issues BEGIN/COMMIT itself (BEGIN IMMEDIATE for writes).
    conn = await aiosqlite.connect(path, isolation_level=None)
    try:
        for pragma in settings:
            await conn.execute(pragma)
    except BaseException:
        await conn.close()  # its thread would keep the process alive
        raise
    return conn


async def connect_writer(path: str, synchronous: str = "FULL") -> InlineConnection:
    """The group-commit writer's connection (see :mod:`.inline` for why it differs)."""
    settings = pragmas(synchronous)
    prepare_file(path)
    return await InlineConnection.open(path, settings)


def create_private(path: str) -> None:
    """Create the database file 0600 if it does not exist yet. SQLite gives the ``-wal`` and
    ``-shm`` files it makes later the database file's mode, so they are 0600 too (it would
    otherwise create all three 0644 less the umask). An existing file keeps its mode."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def migrations() -> list[tuple[int, str, str]]:
    """Every migration shipped with the package: (version, name, sql), in order."""
    found = []
    for entry in resources.files(__package__).joinpath("migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text("utf-8")))
    found.sort()
    for expected, (version, name, _) in enumerate(found, start=1):
        if version != expected:
            raise RuntimeError(f"migration {name} out of sequence (expected {expected:04d})")
    return found


async def migrate(conn: aiosqlite.Connection) -> int:
    """Bring the schema to the newest version; safe when several processes start at once.

    The version lives in ``PRAGMA user_version``. Each migration runs in its own
    ``BEGIN IMMEDIATE`` transaction, re-reading the version under the write lock, so a
    second process starting at the same moment waits and then finds nothing to do.
    """
    available = migrations()
    newest = available[-1][0] if available else 0
    for version, name, sql in available:
        await conn.execute("BEGIN IMMEDIATE")
        try:
            async with conn.execute("PRAGMA user_version") as cursor:
                row = await cursor.fetchone()
            current = int(row[0]) if row else 0
            if current > newest:
                raise RuntimeError(
                    f"database schema version {current} is newer than this scheduler "
                    f"knows ({newest}); upgrade task-orchestrator"
                )
            if current >= version:
                await conn.execute("ROLLBACK")
                continue
            for statement in _statements(sql):
                await conn.execute(statement)
            await conn.execute(f"PRAGMA user_version = {version}")
            await conn.execute("COMMIT")
            log.info("applied migration", extra={"migration": name})
        except BaseException:
            if conn.in_transaction:
                await conn.execute("ROLLBACK")
            raise
    return newest


def _statements(sql: str) -> list[str]:
    """Split a migration into statements (``executescript`` would commit on its own).

    ``sqlite3.complete_statement`` knows where a statement ends, so triggers, whose bodies
    hold semicolons, stay whole.
    """
    statements: list[str] = []
    buffer = ""
    for line in sql.splitlines(keepends=True):
        if not buffer and (not line.strip() or line.strip().startswith("--")):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        raise ValueError(f"incomplete statement at the end of a migration: {buffer[:80]!r}")
    return statements
