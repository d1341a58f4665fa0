"""/healthz, /readyz and /metrics over HTTP: a router any FastAPI app includes (the review-notifier's
API, the console, the MLflow bridge), and a small server for the services without an API of their own.

The server listens before anything else starts (a port already taken stops the process,
non-zero), so /healthz answers while the service connects, and /readyz says what it waits for.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import TYPE_CHECKING

import structlog
import uvicorn
from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

if TYPE_CHECKING:
    from shared.observability import Observability

log = structlog.get_logger()


def router(obs: Observability, healthz: bool = True) -> APIRouter:
    """The routes; `healthz=False` for an app that has its own /healthz."""
    routes = APIRouter()

    if healthz:
        @routes.get("/healthz", include_in_schema=False)
        async def alive() -> dict:
            return {"status": "ok"}  # answered by the event loop: it runs

    @routes.get("/readyz", include_in_schema=False)
    async def ready() -> JSONResponse:
        readiness = await obs.health.readiness()
        return JSONResponse(readiness.body(), status_code=200 if readiness.ready else 503)

    @routes.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        await obs.refresh()
        return Response(generate_latest(obs.registry), media_type=CONTENT_TYPE_LATEST)

    return routes


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside the FastStream app: FastStream owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


class PortUnavailable(RuntimeError):
    """The HTTP address cannot be listened on."""


def listen(host: str, port: int, variables: str) -> socket.socket:
    """A socket listening on host:port; raises PortUnavailable naming `variables` when it cannot."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        log.error("http_port_unavailable", host=host, port=port, error=str(exc))
        raise PortUnavailable(f"cannot listen on {host}:{port} ({exc.strerror}): stop what holds the port, "
                              f"or set {variables}") from exc
    return sock


class HealthServer:
    """Serves `router(obs)` on host:port beside the broker; `start()` in on_startup (first),
    `stop()` in after_shutdown (last)."""

    def __init__(self, obs: Observability, host: str, port: int, prefix: str) -> None:
        self.host, self.port, self.variables = host, port, f"{prefix}HTTP_PORT / {prefix}HTTP_HOST"
        self.app = FastAPI(title=f"Signoff {obs.service} health", openapi_url=None, docs_url=None, redoc_url=None)
        self.app.include_router(router(obs))
        self.server = _EmbeddedServer(uvicorn.Config(self.app, host=host, port=port, log_config=None,
                                                     access_log=False, lifespan="off"))
        self._task: asyncio.Task | None = None

    @property
    def bound_port(self) -> int | None:
        """The port served (the one given, or the one the system chose for port 0)."""
        for server in getattr(self.server, "servers", ()) or ():
            for sock in server.sockets:
                return sock.getsockname()[1]
        return None

    async def start(self, timeout: float = 10.0) -> None:
        sock = listen(self.host, self.port, self.variables)
        self._task = asyncio.create_task(self.server.serve(sockets=[sock]))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.server.started:
            if self._task.done() or loop.time() > deadline:
                sock.close()
                raise PortUnavailable(f"HTTP on {self.host}:{self.port} did not start: "
                                      f"{self._task.exception() if self._task.done() else 'timed out'}")
            await asyncio.sleep(0.01)  # uvicorn sets `started` and has nothing to await
        log.info("http_listening", host=self.host, port=self.bound_port, routes=["/healthz", "/readyz", "/metrics"])

    async def stop(self) -> None:
        if self._task is not None:
            self.server.should_exit = True
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
