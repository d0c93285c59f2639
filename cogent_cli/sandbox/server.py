"""Serving the sandbox over real HTTP: in a background thread for tests and the demo (`run_sandbox`,
on `serve_in_thread`, which serves any ASGI app so), or in the foreground for `cogent sandbox serve`."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import struct
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from sqlite_utils import Database
from starlette.applications import Starlette
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from cogent_cli.collector import fewer_collections
from cogent_cli.errors import CogentError
from cogent_cli.sandbox.app import DROP_CONNECTION, SandboxState, build_app, sandbox_state
from cogent_cli.sandbox.faults import FaultSpec, parse_faults
from cogent_cli.sandbox.ratelimit import Clock
from cogent_cli.sandbox.store import DB_FILE

STARTUP_TIMEOUT = 15.0


class ServerStartError(CogentError):
    pass


def _reset(transport: asyncio.Transport) -> None:
    """Close with an RST rather than a FIN: the client sees 'connection reset by peer'."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class _ConnectionAwareProtocol(H11Protocol):
    """uvicorn's h11 protocol, offering the app a way to drop the connection (fault injection)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        app = self.app

        async def with_drop(scope: Scope, receive: Receive, send: Send) -> None:
            scope.setdefault("extensions", {})[DROP_CONNECTION] = lambda: _reset(transport)
            await app(scope, receive, send)

        self.app = with_drop


def _config(app: ASGIApp, host: str, port: int, access_log: bool) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=_ConnectionAwareProtocol,
        lifespan="on",
        access_log=access_log,
        log_level="warning",
        log_config=None,
        timeout_graceful_shutdown=1,
        timeout_keep_alive=30,
    )


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServerStartError(
            f"Cannot listen on {host}:{port} ({exc.strerror}).",
            hint="Choose another port with --port, or stop whatever is using this one.",
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def base_url_for(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@dataclass
class Sandbox:
    """A running sandbox: where to send requests, and its data to check what arrived."""

    base_url: str
    data_dir: Path
    db: Database
    app: Starlette

    @property
    def state(self) -> SandboxState:
        return sandbox_state(self.app)

    @property
    def stats(self) -> dict[str, int]:
        """Requests seen, statuses answered, 429s and injected faults, by name."""
        return dict(self.state.stats)


@contextmanager
def serve_in_thread(
    app: ASGIApp,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    hint: str = "Check nothing else holds the port, and that the app starts on its own.",
) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on host:port (0 = any free port) in a background thread until
    the block ends; yields its base URL. `hint` says how to find out more when it does not start."""
    sock = _bind(host, port)
    server = uvicorn.Server(_config(app, host, port, access_log=False))
    failure: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # reported to the caller below
            failure.append(exc)

    thread = threading.Thread(target=run, name="cogent-server", daemon=True)
    thread.start()
    started = threading.Event()
    while not started.wait(0.01):
        if server.started or failure or not thread.is_alive():
            started.set()
    if not server.started:
        sock.close()
        raise ServerStartError(
            f"The server did not start ({failure[0] if failure else 'unknown reason'}).",
            hint=hint,
        )
    try:
        yield base_url_for(host, sock.getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(timeout=STARTUP_TIMEOUT)
        sock.close()


@contextmanager
def run_sandbox(
    data_dir: Path | str,
    rate_scale: float = 1.0,
    faults: FaultSpec | str | None = None,
    port: int = 0,
    host: str = "127.0.0.1",
    *,
    extra_routes: Sequence[BaseRoute] = (),
    clock: Clock | None = None,
    job_seconds: float = 0.0,
) -> Iterator[Sandbox]:
    """Serve the sandbox on host:port (0 = any free port) in a background thread until the block ends."""
    data_dir = Path(data_dir)
    spec = parse_faults(faults) if isinstance(faults, str) else faults
    app = build_app(
        data_dir, rate_scale=rate_scale, faults=spec, extra_routes=extra_routes, clock=clock, job_seconds=job_seconds
    )
    with serve_in_thread(
        app, host, port, hint="Run `cogent sandbox serve -v` to see the server's own messages."
    ) as base_url:
        # Callers read (from any thread) while the server writes from its own.
        reader = Database(sqlite3.connect(data_dir / DB_FILE, timeout=30, check_same_thread=False))
        try:
            yield Sandbox(base_url, data_dir, reader, app)
        finally:
            reader.close()


def serve(
    data_dir: Path,
    host: str = "127.0.0.1",
    port: int = 8765,
    rate_scale: float = 1.0,
    faults: FaultSpec | None = None,
    *,
    access_log: bool = False,
    extra_routes: Sequence[BaseRoute] = (),
    on_ready: Callable[[str], None] | None = None,
    job_seconds: float = 0.0,
) -> None:
    """Serve in the foreground until interrupted (Ctrl-C); `on_ready(base_url)` is called once listening."""
    app = build_app(data_dir, rate_scale=rate_scale, faults=faults, extra_routes=extra_routes, job_seconds=job_seconds)
    sock = _bind(host, port)
    if on_ready is not None:
        on_ready(base_url_for(host, sock.getsockname()[1]))
    try:
        # This process does nothing but serve: what was loaded at start-up stays for its lifetime.
        with fewer_collections():
            uvicorn.Server(_config(app, host, port, access_log)).run(sockets=[sock])
    finally:
        sock.close()
