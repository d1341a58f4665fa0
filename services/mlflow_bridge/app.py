"""The bridge's app, built from its settings: FastAPI with the webhook route; opening it (the
lifespan) loads the key, registers the webhook in MLflow and starts the worker and the poller.

POST /mlflow/webhook   an MLflow delivery: 202 accepted (submitted in the background), 200 another
                       event (ignored), 401 bad signature or stale, 409 replayed, 400/413 malformed
GET  /healthz
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.mlflow_bridge import webhook
from services.mlflow_bridge.bridge import Bridge, register_webhook
from services.mlflow_bridge.settings import MlflowBridgeSettings
from services.mlflow_bridge.state import BridgeState
from shared import signing
from shared.sources import ArtifactSource
from signoff.mlflow_source import MlflowSourceSettings, mlflow_client, tracking_uri

log = structlog.get_logger()


def create_app(settings: MlflowBridgeSettings | None = None,
               rules: MlflowSourceSettings | None = None) -> FastAPI:
    settings = settings or MlflowBridgeSettings()
    rules = rules or MlflowSourceSettings()
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None

    @asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        signer = signing.load_private(
            settings.signing_key_file, settings.signing_key.get_secret_value() if settings.signing_key else None,
            file_variable="MLFLOW_BRIDGE_SIGNING_KEY_FILE", env_variable="MLFLOW_BRIDGE_SIGNING_KEY")
        state = BridgeState(settings.state_db)
        mlflow = mlflow_client(rules)
        bridge = Bridge(mlflow=mlflow, tracking_uri=tracking_uri(rules), rules=rules,
                        artifacts=ArtifactSource.from_settings(settings, Path(settings.download_dir)),
                        kafka=settings.kafka, signer=signer, state=state,
                        retry_attempts=settings.retry_attempts, retry_seconds=settings.retry_seconds)
        state.cursor(int(time.time() * 1000))  # first start: versions from now on
        if settings.mode == "webhook" and secret is not None and settings.public_url is not None:
            hook = await asyncio.to_thread(register_webhook, mlflow, settings.webhook_name,
                                           settings.public_url, secret)
            log.info("mlflow_webhook_registered", webhook_id=hook, url=settings.public_url)
        api.state.bridge = bridge
        tasks = [asyncio.create_task(bridge.work()), asyncio.create_task(bridge.poll_forever(settings.poll_seconds))]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            state.close()

    api = FastAPI(title="Signoff MLflow bridge", lifespan=lifespan)

    @api.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.post("/mlflow/webhook")
    async def delivery(request: Request) -> JSONResponse:
        bridge: Bridge = request.app.state.bridge
        if secret is None:
            return _refuse(404, "webhooks are off (MLFLOW_BRIDGE_MODE=poll)")
        body = await _body(request)
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            got = webhook.verify(secret, headers, body, time.time(), settings.max_age_seconds)
        except webhook.Refused as refused:
            return _refuse(refused.status, refused.reason)
        if not bridge.state.claim(got.delivery_id, keep_seconds=2 * settings.max_age_seconds):
            return _refuse(409, f"delivery {got.delivery_id} was received before: a replay")
        if got.name is None or got.version is None:
            log.info("mlflow_webhook_ignored", webhook_event=got.event, delivery_id=got.delivery_id)
            return JSONResponse({"ignored": got.event})
        try:
            bridge.queue.put_nowait((got.name, got.version))
        except asyncio.QueueFull:  # the poller's walk submits it later
            log.warning("mlflow_webhook_queue_full", delivery_id=got.delivery_id)
        log.info("mlflow_webhook_accepted", delivery_id=got.delivery_id, name=got.name, version=got.version)
        return JSONResponse({"accepted": f"models:/{got.name}/{got.version}"}, status_code=202)

    return api


async def _body(request: Request) -> bytes:
    """At most MAX_BODY + 1 bytes of the body (verify refuses more), never the whole of a flood."""
    chunks, size = [], 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size > webhook.MAX_BODY:
            break
    return b"".join(chunks)


def _refuse(status: int, reason: str) -> JSONResponse:
    log.warning("mlflow_webhook_refused", status=status, why=reason)
    return JSONResponse({"detail": reason}, status_code=status)
