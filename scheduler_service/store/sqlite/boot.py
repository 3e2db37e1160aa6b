"""Which boot of the host the monotonic lease clocks in the database belong to.

Monotonic time restarts at every boot, so deadlines written before a reboot mean nothing
after it. At start-up the store compares the host's boot id with the one it recorded; when
they differ, every RUNNING lease is expired (its worker is gone with the old boot anyway)
and the reaper takes the tasks back as lost-worker attempts.
"""

from __future__ import annotations

import time
from pathlib import Path

import aiosqlite

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def current_boot_id() -> str:
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:  # not Linux: the boot time, to the minute, names the boot
        return f"booted-{int(time.time() - time.monotonic()) // 60}"


async def adopt_boot(conn: aiosqlite.Connection, boot_id: str) -> int:
    """Record ``boot_id``; if another boot was recorded, expire its leases. Answers how many.

    Raises ``sqlite3.OperationalError`` when the database cannot be written."""
    await conn.execute("BEGIN IMMEDIATE")
    try:
        async with conn.execute("SELECT value FROM settings WHERE key = 'boot_id'") as cursor:
            row = await cursor.fetchone()
        expired = 0
        if row is None or row[0] != boot_id:
            async with conn.execute(
                "UPDATE tasks SET lease_expires_at = -1, attempt_deadline = 9223372036854775807 "
                "WHERE state = 3 RETURNING id"
            ) as cursor:
                expired = len(list(await cursor.fetchall()))
        # Written even when unchanged: this write is also the start-up proof that the file
        # can be written at all (SQLite opens an unwritable file read-only without a word).
        await conn.execute(
            "INSERT INTO settings (key, value) VALUES ('boot_id', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (boot_id,),
        )
        await conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            await conn.execute("ROLLBACK")
        raise
    return expired
