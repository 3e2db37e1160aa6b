"""Live data for the dashboard: one sampler for every open page, and server-sent events.

The sampler reads the store's counters once a second while at least one page listens and
hands the same snapshot to every page, so ten open dashboards cost what one does. When
the last page leaves, it stops reading altogether.

Server-sent events (not websockets): the data flows one way, browsers reconnect on their
own, and aiohttp serves them as a plain streamed response.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

Snapshot = dict[str, Any]


class TooManyListeners(Exception):
    """The dashboard's limit on open event streams was reached."""


class OverviewSampler:
    """Reads ``take()`` every ``interval`` seconds while anybody subscribes."""

    def __init__(
        self,
        take: Callable[[], Awaitable[Snapshot]],
        interval: float = 1.0,
        max_listeners: int = 100,
    ) -> None:
        self._take = take
        self._interval = interval
        self._max_listeners = max_listeners
        self._queues: set[asyncio.Queue[Snapshot | None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def listeners(self) -> int:
        return len(self._queues)

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[asyncio.Queue[Snapshot | None]]:
        """A queue of snapshots (None: the server is closing) for the ``with`` block."""
        if self._closed:
            raise TooManyListeners("the dashboard is shutting down")
        if len(self._queues) >= self._max_listeners:
            raise TooManyListeners(f"at most {self._max_listeners} live dashboard pages")
        # Only the newest snapshot matters to a page: a slow page skips, never piles up.
        queue: asyncio.Queue[Snapshot | None] = asyncio.Queue(maxsize=1)
        self._queues.add(queue)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="dashboard-sampler")
        try:
            yield queue
        finally:
            self._queues.discard(queue)

    async def _run(self) -> None:
        while self._queues and not self._closed:
            started = time.monotonic()
            try:
                snapshot = await self._take()
            except Exception:
                log.exception("dashboard sample failed; trying again")
            else:
                for queue in list(self._queues):
                    _put_latest(queue, snapshot)
            await asyncio.sleep(max(0.0, self._interval - (time.monotonic() - started)))

    async def close(self) -> None:
        self._closed = True
        for queue in list(self._queues):
            _put_latest(queue, None)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _put_latest(queue: asyncio.Queue[Snapshot | None], item: Snapshot | None) -> None:
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(item)


class EventStreams:
    """The open event-stream responses, so that a shutdown ends them at once.

    aiohttp waits for running handlers when it stops; an event stream never ends by
    itself, so each one registers here and is cancelled on shutdown.
    """

    def __init__(self, max_streams: int = 100) -> None:
        self._max_streams = max_streams
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False

    async def serve(
        self, request: web.Request, events: AsyncIterator[tuple[str, Snapshot]]
    ) -> web.StreamResponse:
        if len(self._tasks) >= self._max_streams:
            raise web.HTTPServiceUnavailable(
                text=json.dumps({"error": f"at most {self._max_streams} live streams"}),
                content_type="application/json",
            )
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",  # proxies must not hold the stream back
            }
        )
        await response.prepare(request)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            # A comment first, so the browser's EventSource opens without waiting.
            await response.write(b": connected\n\n")
            async for name, data in events:
                body = json.dumps(data, separators=(",", ":"))
                await response.write(f"event: {name}\ndata: {body}\n\n".encode())
        except ConnectionResetError:
            pass  # the page went away
        except asyncio.CancelledError:
            if not self._closing:
                raise
            # The server is stopping (close() below): end the stream, not the server.
        finally:
            self._tasks.discard(task)
        return response

    async def close(self) -> None:
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
