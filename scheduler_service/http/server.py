"""aiohttp application for ``/healthz``, ``/readyz`` and ``/metrics``.

``/healthz`` and ``/readyz`` are open (probes carry no credentials). When authentication is
on, ``/metrics`` needs an admin: ``Authorization: Bearer <admin token>``, or, with
``--tls-client-ca``, a verified client certificate with ``OU=admin``.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..engine.metrics import SchedulerMetrics
from ..security.access import AccessDenied, Guard, Rule
from ..security.tokens import Role

log = logging.getLogger(__name__)

METRICS_METHOD = "/metrics"
#: The cookie in which the dashboard's login form keeps an admin token (HttpOnly, SameSite).
TOKEN_COOKIE = "orchestrator_token"


def _subject(certificate: dict[str, object]) -> tuple[str, str]:
    """(CN, OU) of a certificate as ``ssl.SSLSocket.getpeercert()`` describes it."""
    found: dict[str, str] = {}
    for rdn in certificate.get("subject", ()):  # type: ignore[attr-defined]
        for key, value in rdn:
            found.setdefault(key, value)
    return found.get("commonName", ""), found.get("organizationalUnitName", "")


def metrics_guard(guard: Guard) -> Guard:
    """``guard``'s credentials, with one rule: the metrics are for admins."""
    return Guard(
        guard.tokens,
        client_certificates=guard.client_certificates,
        rules={METRICS_METHOD: Rule(frozenset({Role.ADMIN}))},
    )


def admin_check(
    guard: Guard, request: web.Request, token: str | None = None
) -> web.Response | None:
    """None when ``request`` may read the metrics, else the 401/403 answer; ``guard`` is
    a :func:`metrics_guard`.

    The credential is ``token`` when given (the dashboard's login form), else the
    ``Authorization`` header, else the dashboard's cookie (browsers cannot add headers to
    the requests a page makes for its own URLs, such as an ``EventSource``).
    """
    if not guard.enabled:
        return None
    certificate = request.transport.get_extra_info("peercert") if request.transport else None
    auth: dict[str, list[bytes]] = {}
    if certificate and guard.client_certificates:
        common_name, unit = _subject(certificate)
        auth = {
            "x509_common_name": [common_name.encode()],
            "x509_subject": [f"OU={unit},CN={common_name}".encode()],
        }
    metadata = [("authorization", value) for value in request.headers.getall("Authorization", [])]
    cookie = request.cookies.get(TOKEN_COOKIE, "")
    if token is not None:
        metadata = [("authorization", f"Bearer {token}")]
    elif not metadata and cookie:
        metadata = [("authorization", f"Bearer {cookie}")]
    try:
        guard.check(METRICS_METHOD, metadata, auth)
    except AccessDenied as denied:
        log.warning("metrics refused: %s", denied.message, extra={"peer": request.remote})
        if denied.code.name == "UNAUTHENTICATED":
            return web.json_response(
                {"error": denied.message},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="orchestrator"'},
            )
        return web.json_response({"error": denied.message}, status=403)
    return None


def build_app(
    metrics: SchedulerMetrics,
    is_ready: Callable[[], bool],
    guard: Guard | None = None,
    *,
    refresh_metrics: Callable[[], Awaitable[None]] | None = None,
) -> web.Application:
    """The HTTP side. ``refresh_metrics`` is awaited before each ``/metrics`` answer: it
    sets the gauges that come from the store (the queue depth), so they cost a read per
    scrape and nothing when nobody scrapes."""
    admins = metrics_guard(guard or Guard())

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        if is_ready():
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "starting"}, status=503)

    async def metrics_page(request: web.Request) -> web.Response:
        refused = admin_check(admins, request)
        if refused is not None:
            return refused
        if refresh_metrics is not None:
            await refresh_metrics()
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_page)
    return app


class HttpServer:
    def __init__(self, app: web.Application) -> None:
        self._runner = web.AppRunner(app, access_log=None)
        self.address = ""

    async def start(self, listen: str, ssl_context: ssl.SSLContext | None = None) -> str:
        host, _, port = listen.rpartition(":")
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, host.strip("[]") or "127.0.0.1", int(port), ssl_context=ssl_context
        )
        await site.start()
        bound = self._runner.addresses[0]
        self.address = f"{bound[0]}:{bound[1]}"
        return self.address

    async def stop(self) -> None:
        await self._runner.cleanup()
