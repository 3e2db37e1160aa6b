"""ChangeFeed: one reader of the store's change feed, fanned out to every watcher.

Each task row carries the revision of the transaction that last changed it; deletions
leave a tombstone with theirs. The feed keeps a cursor ``(revision, task id)`` and, when
woken (a local commit, or another process's commit seen through ``data_version``), reads
what lies past it once and hands each change to the watchers whose filter matches — one
database read for all watchers, however many there are.

A watcher that starts from an older revision first catches up with its own reads, but
only up to the feed's cursor at the moment it subscribed; from there on the feed delivers
to it. Both happen without an ``await`` in between, so nothing is missed or repeated.
Changes to one task between two reads coalesce into its latest state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator

from ..domain.clock import Clock
from ..domain.errors import FailedPrecondition, ResourceExhausted
from ..domain.model import Change, TaskFilter
from ..store.base import TaskStore

log = logging.getLogger(__name__)

Cursor = tuple[int, str]
#: Sorts after every task id, so (R, END) means "everything of revision R".
END_OF_REVISION = "~"
_PAGE = 500


class Subscription:
    """One watcher: registered with the feed from creation, so nothing after it is missed."""

    def __init__(
        self, feed: ChangeFeed, flt: TaskFilter, since_revision: int | None, max_queue: int
    ) -> None:
        self.filter = flt
        self._feed = feed
        self._since = since_revision
        self._joined_at = feed.cursor
        self._queue: asyncio.Queue[Change | None] = asyncio.Queue()
        self._max_queue = max_queue
        self.overflowed = False

    def offer(self, change: Change) -> None:
        if self.overflowed or not self.matches(change):
            return
        if self._queue.qsize() >= self._max_queue:
            self.overflowed = True
            self._queue.put_nowait(None)
            return
        self._queue.put_nowait(change)

    def matches(self, change: Change) -> bool:
        if change.task is not None:
            return self.filter.matches(change.task, self._feed.clock.now())
        # A deletion carries only id, type and client: match on what can be checked.
        if self.filter.task_id and change.task_id != self.filter.task_id:
            return False
        if self.filter.client and change.client != self.filter.client:
            return False
        return not self.filter.types or change.type in self.filter.types

    async def changes(self) -> AsyncIterator[Change]:
        """Matching changes after ``since_revision`` (or after subscribing), forever.

        Raises FailedPrecondition when ``since_revision`` is older than the history kept:
        deletions since then may have been pruned (retention), and a watcher must never
        miss one silently. It lists again and watches from the listing's revision.
        """
        if self._since is not None:
            kept_from = await self._feed.store.history_floor()
            if self._since < kept_from:
                raise FailedPrecondition(
                    f"since_revision {self._since} is older than the change history kept "
                    f"(deletions up to revision {kept_from} were pruned after "
                    "--retain-tombstones); list the tasks again and watch from that listing's "
                    "revision"
                )
            async for change in self._catch_up(self._since):
                yield change
        self._feed.notify()  # pick up anything committed while this watcher was joining
        # This process's feed may lag behind the revision the client asked to start after
        # (another scheduler process committed it, and a read here saw it before this feed
        # did): what the feed then reads up to that revision was promised not to come.
        floor: Cursor | None = None if self._since is None else (self._since, END_OF_REVISION)
        while True:
            item = await self._queue.get()
            if item is None:
                raise ResourceExhausted(
                    f"watcher fell more than {self._max_queue} changes behind; resume with "
                    "since_revision set to the last revision received"
                )
            if floor is not None and (item.revision, item.task_id) <= floor:
                continue
            yield item

    async def _catch_up(self, since: int) -> AsyncIterator[Change]:
        """Read history from ``since`` up to where the feed was when this watcher joined."""
        position: Cursor = (since, END_OF_REVISION)
        while position < self._joined_at:
            changes = await self._feed.store.changes_since(position, _PAGE)
            for change in changes:
                if (change.revision, change.task_id) > self._joined_at:
                    return
                if self.matches(change):
                    yield change
            if len(changes) < _PAGE:
                return
            position = (changes[-1].revision, changes[-1].task_id)


class ChangeFeed:
    def __init__(
        self, store: TaskStore, clock: Clock, poll_interval: float, max_queue: int = 10_000
    ) -> None:
        self.store = store
        self.clock = clock
        self._poll_interval = poll_interval
        self._max_queue = max_queue
        self._subscribers: set[Subscription] = set()
        self._wakeup = asyncio.Event()
        self.cursor: Cursor = (0, END_OF_REVISION)
        self._committed = 0

    async def start(self) -> None:
        self.cursor = (await self.store.revision(), END_OF_REVISION)

    def notify(self, revision: int = 0) -> None:
        """Wake the feed; ``revision`` is that of a commit this process just made."""
        self._committed = max(self._committed, revision)
        self._wakeup.set()

    async def run(self) -> None:
        version = await self.store.data_version()
        while True:
            polled = False
            try:
                await asyncio.wait_for(self._wakeup.wait(), self._poll_interval)
            except TimeoutError:
                now_version = await self.store.data_version()
                if now_version == version:
                    continue
                version = now_version
                polled = True
            self._wakeup.clear()
            if not self._subscribers and not polled and self._committed > self.cursor[0]:
                # Nobody listens, and this process committed: its revision was the newest
                # when it committed, as good as a read, which would cost a thread hop per
                # commit. No await from the check to the cursor update.
                self.cursor = (self._committed, END_OF_REVISION)
                continue
            if not self._subscribers:
                # Nobody listens: skip ahead instead of reading what nobody wants. Check
                # again after the read: a watcher that joined meanwhile was promised
                # everything after the old cursor.
                revision = await self.store.revision()
                if not self._subscribers:
                    self.cursor = (revision, END_OF_REVISION)
                    continue
            try:
                await self._pump()
            except Exception:
                log.exception("reading the change feed failed; will retry")
                await asyncio.sleep(self._poll_interval)

    async def _pump(self) -> None:
        while True:
            changes = await self.store.changes_since(self.cursor, _PAGE)
            # No await from here to the cursor update: subscribe() sees a consistent cursor.
            for change in changes:
                for subscriber in self._subscribers:
                    subscriber.offer(change)
            if changes:
                self.cursor = (changes[-1].revision, changes[-1].task_id)
            if len(changes) < _PAGE:
                return

    @contextlib.contextmanager
    def subscribe(
        self, flt: TaskFilter, since_revision: int | None = None
    ) -> Iterator[Subscription]:
        """Register a watcher for the duration of the ``with`` block."""
        subscription = Subscription(self, flt, since_revision, self._max_queue)
        self._subscribers.add(subscription)
        try:
            yield subscription
        finally:
            self._subscribers.discard(subscription)
