"""Bearer tokens: the ``--auth-tokens`` file (or ``ORCHESTRATOR_AUTH_TOKENS``) and lookups.

The format is one token per line, ``TOKEN ROLE PRINCIPAL``, separated by spaces or tabs;
blank lines and lines starting with ``#`` are ignored::

    # token                              role    principal
    3f0c9c1e-billing-0d6b2a8f5e7d1c4b    client  billing
    a1b2c3d4e5f60718293a4b5c6d7e8f90     worker  workers
    9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b     admin   ops

A token is at least :data:`MIN_TOKEN_LENGTH` characters; roles are ``client``, ``worker`` and
``admin``; the principal is the caller's name (a client's tasks are stored under it). Error
messages name the line, never the token.

Lookups are constant time: the presented token and every known one are reduced to HMAC
digests of one fixed length under a key made at start-up, and ``hmac.compare_digest``
compares the presented digest with *every* entry — no early exit on a match, and no
length to leak.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import re
import secrets
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

MIN_TOKEN_LENGTH = 16
MAX_TOKEN_LENGTH = 4096
MAX_PRINCIPAL_LENGTH = 128
PRINCIPAL_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@\-/]*$")
TOKEN_PATTERN = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces


class Role(enum.StrEnum):
    CLIENT = "client"
    WORKER = "worker"
    ADMIN = "admin"


@dataclass(frozen=True)
class Identity:
    """Who a credential stands for."""

    principal: str
    role: Role


class TokenFileError(ValueError):
    """The tokens file (or variable) cannot be used; the message says where and why."""


def check_principal(principal: str) -> str | None:
    """Why ``principal`` is not a valid principal name, or None."""
    if not 1 <= len(principal) <= MAX_PRINCIPAL_LENGTH:
        return f"the principal must be 1 to {MAX_PRINCIPAL_LENGTH} characters"
    if not PRINCIPAL_PATTERN.match(principal):
        return (
            f"the principal {principal!r} must start with a letter or digit and use only "
            "letters, digits and _ . : @ - /"
        )
    return None


class TokenTable:
    """Known tokens, each as an HMAC digest with the identity it stands for."""

    def __init__(self, entries: Iterable[tuple[str, Identity]] = ()) -> None:
        self._key = secrets.token_bytes(32)
        self._entries: list[tuple[bytes, Identity]] = []
        for token, identity in entries:
            self.add(token, identity)

    def _digest(self, token: bytes) -> bytes:
        return hmac.new(self._key, token, hashlib.sha256).digest()

    def add(self, token: str, identity: Identity) -> None:
        self._entries.append((self._digest(token.encode()), identity))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:  # never the tokens, not even their digests
        return f"TokenTable({len(self._entries)} tokens)"

    def roles(self) -> set[Role]:
        return {identity.role for _, identity in self._entries}

    def lookup(self, token: str) -> Identity | None:
        """The identity of ``token``, or None; the time taken does not depend on which
        entry matched, on whether one did, or on the token's length."""
        presented = self._digest(token.encode(errors="surrogateescape"))
        found: Identity | None = None
        for digest, identity in self._entries:
            # Every entry is compared, whether or not an earlier one matched.
            if hmac.compare_digest(presented, digest):
                found = identity
        return found

    @classmethod
    def parse(cls, text: str, source: str) -> TokenTable:
        """Parse the tokens format; ``source`` names the file or variable in errors."""
        table = cls()
        seen: set[bytes] = set()
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            fields = line.split()
            where = f"{source} line {number}"
            if len(fields) != 3:
                raise TokenFileError(
                    f"{where}: expected 'TOKEN ROLE PRINCIPAL' (3 fields), got {len(fields)}"
                )
            token, role_name, principal = fields
            if not MIN_TOKEN_LENGTH <= len(token) <= MAX_TOKEN_LENGTH:
                raise TokenFileError(
                    f"{where}: the token must be {MIN_TOKEN_LENGTH} to {MAX_TOKEN_LENGTH} "
                    "characters (make one with: python -c 'import secrets; "
                    "print(secrets.token_urlsafe(32))')"
                )
            if not TOKEN_PATTERN.match(token):
                raise TokenFileError(f"{where}: the token must be printable ASCII")
            try:
                role = Role(role_name.lower())
            except ValueError:
                roles = ", ".join(r.value for r in Role)
                raise TokenFileError(
                    f"{where}: unknown role {role_name!r}; roles are {roles}"
                ) from None
            problem = check_principal(principal)
            if problem:
                raise TokenFileError(f"{where}: {problem}")
            digest = table._digest(token.encode())
            if digest in seen:
                raise TokenFileError(f"{where}: the same token appears twice")
            seen.add(digest)
            table.add(token, Identity(principal, role))
        if not table:
            raise TokenFileError(f"{source}: no tokens (every line is blank or a comment)")
        return table

    @classmethod
    def read(cls, path: str) -> TokenTable:
        """Read a tokens file; refuse one that its group or others may read or write."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise TokenFileError(f"--auth-tokens {path}: {exc.strerror}") from None
        with os.fdopen(fd, encoding="utf-8") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise TokenFileError(f"--auth-tokens {path}: not a regular file")
            if mode & 0o077:
                raise TokenFileError(
                    f"--auth-tokens {path}: the file is accessible by its group or others "
                    f"(mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}"
                )
            text = handle.read()
        return cls.parse(text, Path(path).name)
