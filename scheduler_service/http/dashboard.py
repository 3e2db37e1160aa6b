"""The web dashboard: a static page and the JSON and event streams it reads.

Layout of the URL space (all under ``/dashboard``):

- ``/dashboard/`` the page (one HTML file, plain JavaScript and CSS from ``static/``: no
  build step, nothing fetched from outside this server);
- ``/dashboard/api/overview`` counts per state and type, task types, live workers;
- ``/dashboard/api/events`` the same overview, pushed once a second (server-sent events);
- ``/dashboard/api/tasks`` a page of tasks, filtered like ``ListTasks``;
- ``/dashboard/api/tasks/{id}`` one task with payload, result and attempts, and
  ``.../events`` pushes it again whenever it changes;
- ``POST /dashboard/api/task-types/{name}/pause`` and ``.../resume``.

The JSON is the gRPC API's own messages in protobuf's JSON mapping (what grpcurl prints),
built by the same codec, so the page and the API never disagree on a field.

Access: with authentication off (the loopback default) the dashboard is open. With it on,
every route but the login page needs an admin, by ``Authorization: Bearer``, by the
cookie that the login page sets, or by a client certificate with ``OU=admin``. Writes
also need the ``X-Orchestrator-Dashboard`` header, which a cross-site form cannot send and
a cross-site script cannot add without a CORS preflight that this server never grants.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from ..api import codec, page_tokens, validation
from ..api.validation import Limits
from ..domain.clock import Clock
from ..domain.errors import InvalidArgument, NotFound, SchedulerError
from ..domain.model import TaskFilter, TaskState
from ..engine.admin import AdminOperations
from ..engine.feed import ChangeFeed
from ..engine.tasks import TaskOperations
from ..security.access import Guard
from .live import EventStreams, OverviewSampler, Snapshot, TooManyListeners
from .server import TOKEN_COOKIE, admin_check, metrics_guard

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
WRITE_HEADER = "X-Orchestrator-Dashboard"
_PAGE_DEFAULT = 50
_STATE_NAMES = {state.name.lower(): state for state in TaskState if state.value <= 6}
_SECURITY_HEADERS = {
    # Everything the page needs comes from this server; nothing inline, no frames.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def to_json(message: Message) -> dict[str, Any]:
    return MessageToDict(message, always_print_fields_with_no_presence=True)


def _json_errors(handler: Handler) -> Handler:
    """Domain errors become JSON answers naming the field; the one place for it here."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except InvalidArgument as error:
            return web.json_response({"error": error.message, "field": error.field}, status=400)
        except NotFound as error:
            return web.json_response({"error": error.message}, status=404)
        except TooManyListeners as error:
            return web.json_response({"error": str(error)}, status=503)
        except SchedulerError as error:
            return web.json_response({"error": error.message}, status=409)

    return wrapped


class Dashboard:
    def __init__(
        self,
        tasks: TaskOperations,
        admin: AdminOperations,
        feed: ChangeFeed,
        clock: Clock,
        limits: Limits,
        guard: Guard,
        *,
        secure_cookies: bool = False,
        sample_interval: float = 1.0,
    ) -> None:
        self._tasks = tasks
        self._admin = admin
        self._feed = feed
        self._clock = clock
        self._limits = limits
        self._admins = metrics_guard(guard)
        self._secure_cookies = secure_cookies
        self.sampler = OverviewSampler(self.overview, sample_interval)
        self.streams = EventStreams()

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/dashboard", self._redirect_to_page)
        r.add_get("/dashboard/", self._page)
        r.add_get("/dashboard/login", self._login_page)
        r.add_post("/dashboard/login", self._login)
        r.add_post("/dashboard/logout", self._logout)
        r.add_get("/dashboard/static/{name}", self._static)
        r.add_get("/dashboard/api/overview", self._guarded(self._overview))
        r.add_get("/dashboard/api/events", self._guarded(self._overview_events))
        r.add_get("/dashboard/api/tasks", self._guarded(self._task_list))
        r.add_get("/dashboard/api/tasks/{id}", self._guarded(self._task))
        r.add_get("/dashboard/api/tasks/{id}/events", self._guarded(self._task_events))
        r.add_post(
            "/dashboard/api/task-types/{name}/{action:pause|resume}",
            self._guarded(self._set_paused, write=True),
        )
        app.on_shutdown.append(self._close)

    async def _close(self, app: web.Application) -> None:
        await self.sampler.close()
        await self.streams.close()

    def _guarded(self, handler: Handler, *, write: bool = False) -> Handler:
        handler = _json_errors(handler)

        async def checked(request: web.Request) -> web.StreamResponse:
            refused = admin_check(self._admins, request)
            if refused is not None:
                return refused
            if write and request.headers.get(WRITE_HEADER) != "1":
                return web.json_response(
                    {"error": f"writes need the header {WRITE_HEADER}: 1"}, status=403
                )
            return await handler(request)

        return checked

    # -- the page ------------------------------------------------------------------------

    async def _redirect_to_page(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/dashboard/")

    async def _page(self, request: web.Request) -> web.StreamResponse:
        if self._admins.enabled and admin_check(self._admins, request) is not None:
            raise web.HTTPFound("/dashboard/login")
        return _file("dashboard.html")

    async def _static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in {"dashboard.js", "dashboard.css"}:
            raise web.HTTPNotFound()
        return _file(name)

    async def _login_page(self, request: web.Request) -> web.StreamResponse:
        page = (STATIC / "login.html").read_text()
        if "refused" in request.query:
            page = page.replace(
                "<input", '<p class="error">That is not an admin token.</p>\n    <input', 1
            )
        return web.Response(text=page, content_type="text/html", headers=_SECURITY_HEADERS)

    async def _login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        token = str(form.get("token", "")).strip()
        if not token or admin_check(self._admins, request, token) is not None:
            raise web.HTTPFound("/dashboard/login?refused=1")
        response = web.HTTPSeeOther("/dashboard/")
        response.set_cookie(
            TOKEN_COOKIE,
            token,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=self._secure_cookies,
        )
        raise response

    async def _logout(self, request: web.Request) -> web.StreamResponse:
        response = web.HTTPSeeOther("/dashboard/login")
        response.del_cookie(TOKEN_COOKIE, path="/")
        raise response

    # -- data ----------------------------------------------------------------------------

    async def overview(self) -> Snapshot:
        """Counts, types and workers as of now: what the overview page draws."""
        stats = await self._admin.stats()
        workers = await self._admin.live_workers()
        by_type = await self._admin.workers_by_type(workers)
        types = await self._admin.task_types()
        return {
            "time": self._clock.now() // 1000,
            "revision": self._feed.cursor[0],
            "stats": to_json(codec.stats_message(stats, len(workers))),
            "taskTypes": [
                to_json(codec.task_type_message(t, by_type.get(t.name, 0))) for t in types
            ],
            "workers": [to_json(codec.worker_message(w)) for w in workers],
        }

    async def _overview(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(await self.overview())

    async def _overview_events(self, request: web.Request) -> web.StreamResponse:
        with self.sampler.subscribe() as queue:

            async def snapshots() -> AsyncIterator[tuple[str, Snapshot]]:
                while (snapshot := await queue.get()) is not None:
                    yield "overview", snapshot

            return await self.streams.serve(request, snapshots())

    async def _task_list(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        flt = self._filter(query)
        size = validation.page_size(
            "page_size", _int(query, "page_size"), _PAGE_DEFAULT, self._limits.max_page_size
        )
        fingerprint = page_tokens.fingerprint(["dashboard", page_tokens.filter_key(flt)])
        after = page_tokens.decode(query.get("page_token", ""), fingerprint)
        page = await self._tasks.list(
            flt, page_size=size, after_id=after, descending=True, full=False
        )
        now = self._clock.now()
        return web.json_response(
            {
                "tasks": [to_json(codec.task_message(t, now, full=False)) for t in page.tasks],
                "nextPageToken": (
                    page_tokens.encode(page.last_id, fingerprint) if page.last_id else ""
                ),
                "revision": page.revision,
            }
        )

    def _filter(self, query: Any) -> TaskFilter:
        states = []
        for i, name in enumerate(query.getall("states", [])):
            state = _STATE_NAMES.get(name.strip().lower().removeprefix("task_state_"))
            if state is None:
                raise InvalidArgument(
                    f"states[{i}]",
                    f"unknown state {name[:40]!r}; use one of " + ", ".join(_STATE_NAMES),
                )
            states.append(int(state))
        labels: dict[str, str] = {}
        for i, pair in enumerate(query.getall("labels", [])):
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise InvalidArgument(f"labels[{i}]", "must be key=value")
            labels[key] = value
        flt = validation.task_filter(
            states=states,
            types=[t for t in query.getall("types", []) if t],
            client=query.get("client", ""),
            group=query.get("group", ""),
            labels=labels,
            limits=self._limits,
        )
        task_id = query.get("task_id", "").strip()
        if task_id:
            validation.require_task_id("task_id", task_id)
            flt = dataclasses.replace(flt, task_id=task_id)
        return flt

    async def _task_snapshot(self, task_id: str) -> Snapshot:
        task, attempts = await self._tasks.get(task_id)
        return to_json(codec.task_message(task, self._clock.now(), full=True, attempts=attempts))

    async def _task(self, request: web.Request) -> web.StreamResponse:
        task_id = validation.require_task_id("id", request.match_info["id"])
        return web.json_response(await self._task_snapshot(task_id))

    async def _task_events(self, request: web.Request) -> web.StreamResponse:
        task_id = validation.require_task_id("id", request.match_info["id"])
        # Subscribe before the first read, so that no change between the two is lost.
        with self._feed.subscribe(TaskFilter(task_id=task_id)) as subscription:
            first = await self._task_snapshot(task_id)  # NotFound: a 404, before streaming

            async def snapshots() -> AsyncIterator[tuple[str, Snapshot]]:
                yield "task", first
                async for change in subscription.changes():
                    if change.task is None:
                        yield "deleted", {"id": task_id}
                        return
                    yield "task", await self._task_snapshot(task_id)

            return await self.streams.serve(request, snapshots())

    async def _set_paused(self, request: web.Request) -> web.StreamResponse:
        name = validation.require_type("name", request.match_info["name"])
        paused = request.match_info["action"] == "pause"
        record = await self._admin.set_paused(name, paused)
        workers = await self._admin.workers_by_type()
        log.info(
            "task type %s from the dashboard",
            "paused" if paused else "resumed",
            extra={"type": name, "peer": request.remote},
        )
        return web.json_response(to_json(codec.task_type_message(record, workers.get(name, 0))))


def _file(name: str) -> web.StreamResponse:
    response = web.FileResponse(STATIC / name, headers=_SECURITY_HEADERS)
    response.headers["Cache-Control"] = "no-cache"
    return response


def _int(query: Any, name: str) -> int:
    text = query.get(name, "")
    if not text:
        return 0
    try:
        return int(text)
    except ValueError:
        raise InvalidArgument(name, f"{text[:20]!r} is not a whole number") from None
