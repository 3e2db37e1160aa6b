"""Task ids that sort by creation time (ULID layout, Crockford base32, 26 characters).

48 bits of milliseconds then 80 random bits. Within one millisecond a process increments
the random part, so ids made by one scheduler are strictly increasing; ids from several
processes interleave by millisecond, which is all "newest first" needs.
"""

from __future__ import annotations

import secrets
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM_BITS = 80


class IdGenerator:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_random = 0

    def new_id(self, now_ms: int | None = None) -> str:
        ms = int(time.time() * 1000) if now_ms is None else now_ms
        with self._lock:
            if ms <= self._last_ms:
                ms = self._last_ms
                self._last_random += 1
                if self._last_random >= 1 << _RANDOM_BITS:  # pragma: no cover - 2^80 per ms
                    ms += 1
                    self._last_random = secrets.randbits(_RANDOM_BITS - 1)
            else:
                # Leave headroom so increments within the millisecond never overflow.
                self._last_random = secrets.randbits(_RANDOM_BITS - 1)
            self._last_ms = ms
            value = (ms << _RANDOM_BITS) | self._last_random
        return encode(value)


def encode(value: int) -> str:
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def is_valid_id(text: str) -> bool:
    return len(text) == 26 and all(c in _ALPHABET for c in text) and text[0] in "01234567"
