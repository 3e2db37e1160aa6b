"""A TCP proxy on loopback that can make a link go silent, for network fault tests.

:meth:`TcpProxy.blackhole` stops forwarding in both directions *without closing anything*:
the proxy keeps reading what either side sends and drops it, so no FIN or RST ever reaches
a peer and its writes never block — exactly what a peer sees when a cable is pulled or a
NAT table forgets the connection. Connections opened meanwhile are accepted and blackholed
too. :meth:`TcpProxy.heal` forwards again for new connections and drops the blackholed ones
(their peers gave up on them long ago; whatever the kernel sends on closing them is beside
the point).

Runs on the test's event loop::

    proxy = await TcpProxy.start("127.0.0.1:50051")
    ... connect to proxy.address ...
    proxy.blackhole(); ...; proxy.heal()
    await proxy.close()
"""

from __future__ import annotations

import asyncio
import contextlib

CHUNK = 65536


class _Link:
    """One client connection and its upstream connection (absent when blackholed at once)."""

    def __init__(self, client: asyncio.StreamWriter, blackholed: bool) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.blackholed = blackholed
        self.tasks: list[asyncio.Task[None]] = []
        #: Bytes read and dropped while blackholed (both directions).
        self.dropped = 0

    def drop(self) -> None:
        """Stop pumping and close both sockets (abort: nothing is flushed)."""
        for task in self.tasks:
            task.cancel()
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()


class TcpProxy:
    def __init__(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        self._target = (host, int(port))
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._blackholed = False
        self.address = ""
        #: Connections accepted so far (a reconnecting peer makes new ones).
        self.accepted = 0

    @classmethod
    async def start(cls, target: str) -> TcpProxy:
        proxy = cls(target)
        proxy._server = await asyncio.start_server(proxy._accept, "127.0.0.1", 0)
        port = proxy._server.sockets[0].getsockname()[1]
        proxy.address = f"127.0.0.1:{port}"
        return proxy

    @property
    def blackholed(self) -> bool:
        return self._blackholed

    @property
    def dropped_bytes(self) -> int:
        return sum(link.dropped for link in self._links)

    def blackhole(self) -> None:
        """Stop forwarding on every link, now and for new connections; close nothing."""
        self._blackholed = True
        for link in self._links:
            link.blackholed = True

    def heal(self) -> None:
        """Forward new connections again; drop the links that were blackholed."""
        self._blackholed = False
        for link in [link for link in self._links if link.blackholed]:
            link.drop()
            self._links.discard(link)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.drop()
        self._links.clear()
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        link = _Link(writer, self._blackholed)
        self._links.add(link)
        if link.blackholed:  # never connected upstream: read and drop until healed
            link.tasks = [asyncio.create_task(self._pump(link, reader, None))]
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            self._links.discard(link)
            return
        link.upstream = up_writer
        link.tasks = [
            asyncio.create_task(self._pump(link, reader, up_writer)),
            asyncio.create_task(self._pump(link, up_reader, writer)),
        ]

    async def _pump(
        self, link: _Link, source: asyncio.StreamReader, sink: asyncio.StreamWriter | None
    ) -> None:
        try:
            while True:
                data = await source.read(CHUNK)
                if not data:  # the peer closed: close the whole link (unless silenced)
                    break
                if link.blackholed or sink is None:
                    link.dropped += len(data)
                    continue
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        if link.blackholed:  # a silent link never passes a close on
            return
        with contextlib.suppress(Exception):
            link.drop()
        self._links.discard(link)
