"""The operator's road to the API server, with a switch that makes it drop packets silently (bench/chaos.py).

    proxy = DropProxy(HOST, apiserver_port).start()     # the operator's kubeconfig points at proxy.port
    proxy.drop()       # from now on nothing passes either way; new connections are accepted and held
    proxy.restore()    # new connections work again; see `sever` for the ones that lived through it

While dropping, no byte is read from either side (the kernels' buffers fill and senders stall, as when the
network loses packets) and no connection is closed or reset: a client sees neither data nor an error, only
time passing. That is the failure kopf's watch timeouts must survive (kopf #1276): a watch whose connection
went silent never ends by itself, so only a client-side timeout (CITYHUB_WATCH_CLIENT_TIMEOUT) makes kopf
abandon it and reconnect; without one the operator stops reconciling for good while /healthz says OK.

`sever` (default True): connections that saw the drop stay silent for ever after `restore()` — a NAT or
conntrack entry that was lost, a load balancer that forgot the flow — so nothing but the client's own
timeouts rescues a request stuck on one (watches, pooled keep-alive connections of status patches and Secret
writes alike). With `sever=False` they resume, bytes queued in the kernels delivered late, like TCP after a
2-minute outage that its retransmissions outlast.

Unlike cityhub.testkit.TcpProxy (which resets the connections that lived through a blackhole, so a client
learns of the outage from the reset), nothing here ever tells the client: it is the harsher fault. asyncio,
on its own loop in a daemon thread of the runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass, field

from cityhub import supervisor

CHUNK = 65536


@dataclass(eq=False)
class _Link:
    """One client connection and its upstream: `dead` once it saw a drop in sever mode (never forwards)."""

    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    dead: bool = False


class DropProxy:
    def __init__(self, host: str, port: int, *, sever: bool = True) -> None:
        self.target = (host, port)
        self.sever = sever
        self.port = supervisor.free_port()
        self.dropping = False
        self.connections = 0
        self.held = 0
        """Connections accepted while dropping (never forwarded)."""
        self._links: set[_Link] = set()
        self._loop = asyncio.new_event_loop()
        self._open: asyncio.Event | None = None
        self._ready = threading.Event()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._run, name=f"drop-proxy :{self.port}", daemon=True)

    def start(self) -> DropProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"the proxy on port {self.port} did not start")
        return self

    def drop(self) -> None:
        self._loop.call_soon_threadsafe(self._set, True)

    def restore(self) -> None:
        self._loop.call_soon_threadsafe(self._set, False)

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._shutdown)
        self._thread.join(10)

    # -- the loop's side ---------------------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._open = asyncio.Event()
        self._open.set()
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._accept, supervisor.HOST, self.port)
        )
        self._ready.set()
        try:
            self._loop.run_forever()
            pending = asyncio.all_tasks(self._loop)
            for task in pending:  # the held and dead connections' tasks wait for ever: ended here
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        finally:
            self._loop.close()

    def _set(self, dropping: bool) -> None:
        assert self._open is not None
        self.dropping = dropping
        if dropping:
            self._open.clear()
            if self.sever:
                for link in self._links:
                    link.dead = True
        else:
            self._open.set()

    def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            for w in link.writers:
                w.close()
        self._loop.stop()

    async def _gate(self, link: _Link) -> None:
        """Return when `link` may pass bytes; a dead link never may."""
        assert self._open is not None
        while link.dead or not self._open.is_set():
            if link.dead:
                await asyncio.Event().wait()  # for ever (the task is cancelled at shutdown)
            await self._open.wait()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = _Link([writer], dead=self.dropping and self.sever)
        self._links.add(link)
        self.connections += 1
        try:
            if self.dropping:
                self.held += 1
            await self._gate(link)  # held while dropping: accepted, never answered, never closed
            try:
                up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*self.target), 10)
            except (TimeoutError, OSError):
                return  # the API server is down: the client sees its connection closed, as it would
            link.writers.append(up_writer)
            await asyncio.gather(self._pump(reader, up_writer, link), self._pump(up_reader, writer, link))
        finally:
            self._links.discard(link)
            for w in link.writers:
                with contextlib.suppress(Exception):
                    w.close()

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, link: _Link) -> None:
        try:
            while True:
                await self._gate(link)  # nothing is read while dropping: the sender's buffers fill
                data = await src.read(CHUNK)
                if not data:
                    break
                await self._gate(link)  # read just before the drop began: lost with the rest
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                dst.close()  # one side ended normally: the other follows (the API server's own timeouts)
