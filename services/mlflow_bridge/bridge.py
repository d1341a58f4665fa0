"""The bridge's work: submit one version, poll the registry, register the webhook.

A version is handled once (state.py): submitted, or refused for good (no such version, a name
or a field the contract cannot take, model files Signoff may not read); each refusal is logged
with its reason and nothing is published. A failure that may pass (MLflow, S3 or Kafka
unreachable, a digest that did not finish in time, a version still being registered) puts the
version on the retry list: each poll tries it once more, after the new versions. Once the version
itself has failed `retry_attempts` times over at least `retry_seconds` it is refused for good
(logged, `signoff submit --mlflow` submits it by hand once the cause is fixed); Kafka being
unreachable is not counted against it. The poll walks new versions in creation order from the
cursor and moves the cursor past each one it handled or put on the retry list: no one version
holds up the versions after it. Versions are handled one at a time per version (a webhook and a
poll never submit the same one twice at once), and a slow one holds up no other.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Final

import structlog

from shared import signing
from shared.events import ModelSubmitted
from shared.kafka import KafkaAccess
from shared.sources import ArtifactError, ArtifactSource
from signoff import client as signoff_client
from signoff import mlflow_mapping
from signoff.mlflow_mapping import MappingError, Reference
from signoff.mlflow_source import MlflowSourceSettings, VersionNotFound, VersionPending, resolve

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
                 state: BridgeState, retry_attempts: int = 5, retry_seconds: float = 3600.0) -> None:
        self.mlflow, self.tracking_uri, self.rules = mlflow, tracking_uri, rules
        self.artifacts, self.kafka, self.signer, self.state = artifacts, kafka, signer, state
        self.retry_attempts, self.retry_seconds = retry_attempts, retry_seconds
        self.queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue(maxsize=1000)
        self._busy: dict[tuple[str, str], tuple[asyncio.Lock, list[int]]] = {}

    @asynccontextmanager
    async def _alone(self, name: str, version: str) -> AsyncIterator[None]:
        """NAME/VERSION handled by one caller at a time; other versions meanwhile by the others."""
        lock, users = self._busy.setdefault((name, version), (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._busy[(name, version)]

    async def handle(self, name: str, version: str) -> bool:
        """Submit NAME/VERSION unless it was handled; True when it is handled now (submitted or
        refused for good), False when it is on the retry list (a failure that may pass)."""
        async with self._alone(name, version):
            if self.state.handled(name, version) is not None:
                return True
            ref = Reference(name, version)
            try:
                resolved = await resolve(ref, self.mlflow, self.rules, self.artifacts)
            except VersionPending as exc:
                return self._retry(ref, str(exc), counted=True)
            except (VersionNotFound, MappingError) as exc:
                return self._refused(ref, str(exc))
            except ArtifactError as exc:
                return self._retry(ref, str(exc), counted=True) if exc.transient else self._refused(ref, str(exc))
            except Exception as exc:  # MLflow or S3 unreachable, ...
                return self._retry(ref, f"{type(exc).__name__}: {exc}", counted=True)
            # The ids are those of the version MLflow returned: "0003" asked for is its version "3".
            canonical = (resolved.facts.name, resolved.facts.version)
            event = ModelSubmitted(
                event_id=mlflow_mapping.event_id(self.tracking_uri, *canonical),
                submission_id=mlflow_mapping.submission_id(self.tracking_uri, *canonical),
                submission=resolved.submission)
            try:
                await signoff_client.publish(self.kafka, [event], source=SOURCE, signer=self.signer)
            except Exception as exc:  # Kafka unreachable: not the version's doing, so not counted
                return self._retry(ref, f"{type(exc).__name__}: {exc}", counted=False)
            outcome = f"submitted {event.submission_id}"
            for key in {(name, version), canonical}:
                self.state.record(*key, outcome)
            log.info("mlflow_version_submitted", ref=str(ref), submission_id=str(event.submission_id),
                     model=event.key, version=resolved.facts.version)
            return True

    def _retry(self, ref: Reference, why: str, *, counted: bool) -> bool:
        """On the retry list; refused for good once its own failures are spent."""
        attempts, first = self.state.failed(ref.name, ref.version or "", why, counted=counted)
        if counted and attempts >= self.retry_attempts and first is not None and \
                time.time() - first >= self.retry_seconds:
            return self._refused(ref, f"gave up after {attempts} attempts over {int(time.time() - first)} s "
                                 f"(MLFLOW_BRIDGE_RETRY_ATTEMPTS, _RETRY_SECONDS); the last: {why[:1500]}; once "
                                 f"fixed, submit it with `signoff submit --mlflow {ref}`")
        log.warning("mlflow_version_retry_later", ref=str(ref), attempts=attempts, why=why[:1000])
        return False

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
        """One pass: the versions created since the cursor, then the retry list (each version on it
        tried once). Returns how many versions it handled (submitted or refused)."""
        cursor = self.state.cursor(int(time.time() * 1000))
        versions = await asyncio.to_thread(lambda: list(_created_since(self.mlflow, cursor)))
        done, tried = 0, set()
        for created_ms, name, version in sorted(versions, key=lambda v: (v[0], v[1], int(v[2]))):
            if not self.state.retrying(name, version):  # one on the list is tried below, once a pass
                done += await self.handle(name, version)
                tried.add((name, version))
            self.state.advance(created_ms)  # handled or on the retry list: the cursor never waits on it
        for name, version in self.state.retries():
            if (name, version) not in tried:
                done += await self.handle(name, version)
        return done

    async def poll_forever(self, every: float) -> None:
        while True:
            try:
                await self.poll()
            except Exception as exc:  # the registry unreachable: try again at the next tick
                log.warning("mlflow_poll_failed", why=f"{type(exc).__name__}: {exc}"[:1000])
            await asyncio.sleep(every)  # the polling period itself, not a wait for a condition


def _created_since(mlflow: MlflowClient, cursor_ms: int) -> Iterator[tuple[int, str, str]]:
    """(created ms, name, version) of each version created at or after `cursor_ms`, newest first,
    reading pages only until one reaches back before the cursor."""
    token: str | None = None
    while True:
        page: Any = mlflow.search_model_versions(max_results=PAGE, order_by=["creation_timestamp DESC"],
                                                 page_token=token)
        for v in page:
            if v.creation_timestamp < cursor_ms:
                return
            yield int(v.creation_timestamp), str(v.name), str(v.version)
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
