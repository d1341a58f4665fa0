"""The bridge's work: submit one version, poll the registry, register the webhook.

A version is handled once (state.py): submitted, or refused for good (no such version, a name
or a field the contract cannot take, model files Signoff may not read); each refusal is logged
with its reason and nothing is published. A failure that may pass (Kafka or MLflow unreachable,
S3 throttling) leaves the version unhandled: the next poll tries it again. Polls walk versions in
creation order from the cursor and never move it past a version that is not handled yet.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

import structlog

from shared import signing
from shared.events import ModelSubmitted
from shared.kafka import KafkaAccess
from shared.sources import ArtifactError, ArtifactSource
from signoff import client as signoff_client
from signoff import mlflow_mapping
from signoff.mlflow_mapping import MappingError, Reference
from signoff.mlflow_source import MlflowSourceSettings, VersionNotFound, resolve

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from services.mlflow_bridge.state import BridgeState

SOURCE = "/signoff/mlflow-bridge"
EVENT: Final = "model_version.created"
PAGE = 100
log = structlog.get_logger()


class Bridge:
    def __init__(self, *, mlflow: MlflowClient, tracking_uri: str, rules: MlflowSourceSettings,
                 artifacts: ArtifactSource, kafka: KafkaAccess, signer: signing.Signer,
                 state: BridgeState) -> None:
        self.mlflow, self.tracking_uri, self.rules = mlflow, tracking_uri, rules
        self.artifacts, self.kafka, self.signer, self.state = artifacts, kafka, signer, state
        self.queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue(maxsize=1000)
        self._one_at_a_time = asyncio.Lock()

    async def handle(self, name: str, version: str) -> bool:
        """Submit NAME/VERSION unless it was handled; True when it is handled now (submitted or
        refused for good), False when it failed in a way that may pass (tried again by a poll)."""
        async with self._one_at_a_time:
            if self.state.handled(name, version) is not None:
                return True
            ref = Reference(name, version)
            try:
                resolved = await resolve(ref, self.mlflow, self.rules, self.artifacts)
                event = ModelSubmitted(
                    event_id=mlflow_mapping.event_id(self.tracking_uri, name, version),
                    submission_id=mlflow_mapping.submission_id(self.tracking_uri, name, version),
                    submission=resolved.submission)
                await signoff_client.publish(self.kafka, [event], source=SOURCE, signer=self.signer)
            except (VersionNotFound, MappingError) as exc:
                return self._refused(ref, str(exc))
            except ArtifactError as exc:
                if not exc.transient:
                    return self._refused(ref, str(exc))
                log.warning("mlflow_version_retry_later", ref=str(ref), why=str(exc))
                return False
            except Exception as exc:  # MLflow or Kafka unreachable, ...: the next poll tries again
                log.warning("mlflow_version_retry_later", ref=str(ref), why=f"{type(exc).__name__}: {exc}"[:1000])
                return False
            self.state.record(name, version, f"submitted {event.submission_id}")
            log.info("mlflow_version_submitted", ref=str(ref), submission_id=str(event.submission_id),
                     model=event.key, version=version)
            return True

    def _refused(self, ref: Reference, why: str) -> bool:
        self.state.record(ref.name, ref.version or "", f"refused: {why}")
        log.warning("mlflow_version_refused", ref=str(ref), why=why[:2000])
        return True

    async def work(self) -> None:
        """Handle the versions webhooks announce, in order (runs for the app's life)."""
        while True:
            name, version = await self.queue.get()
            try:
                await self.handle(name, version)
            finally:
                self.queue.task_done()

    async def poll(self) -> int:
        """One pass over the versions created since the cursor; returns how many it handled."""
        cursor = self.state.cursor(int(time.time() * 1000))
        versions = await asyncio.to_thread(lambda: list(_created_since(self.mlflow, cursor)))
        done = 0
        for created_ms, name, version, ready in sorted(versions, key=lambda v: (v[0], v[1], int(v[2]))):
            if not ready or not await self.handle(name, version):
                break  # not registered yet, or to try again: the cursor stays before it
            self.state.advance(created_ms)
            done += 1
        return done

    async def poll_forever(self, every: float) -> None:
        while True:
            try:
                await self.poll()
            except Exception as exc:  # the registry unreachable: try again at the next tick
                log.warning("mlflow_poll_failed", why=f"{type(exc).__name__}: {exc}"[:1000])
            await asyncio.sleep(every)  # the polling period itself, not a wait for a condition


def _created_since(mlflow: MlflowClient, cursor_ms: int) -> Iterator[tuple[int, str, str, bool]]:
    """(created ms, name, version, ready) of each version created at or after `cursor_ms`, newest
    first, reading pages only until one reaches back before the cursor."""
    token: str | None = None
    while True:
        page: Any = mlflow.search_model_versions(max_results=PAGE, order_by=["creation_timestamp DESC"],
                                                 page_token=token)
        for v in page:
            if v.creation_timestamp < cursor_ms:
                return
            yield int(v.creation_timestamp), str(v.name), str(v.version), str(v.status) == "READY"
        token = page.token
        if not token:
            return


def register_webhook(mlflow: MlflowClient, name: str, url: str, secret: str) -> str:
    """The bridge's webhook in MLflow, found by `name` and updated, or created; returns its id."""
    token: str | None = None
    while True:
        page: Any = mlflow.list_webhooks(max_results=PAGE, page_token=token)
        for hook in page:
            if hook.name == name:
                mlflow.update_webhook(hook.webhook_id, url=url, events=[EVENT], secret=secret, status="ACTIVE")
                return str(hook.webhook_id)
        token = page.token
        if not token:
            break
    hook = mlflow.create_webhook(name, url, [EVENT], description="Signoff: submit every new model version",
                                 secret=secret)
    return str(hook.webhook_id)
