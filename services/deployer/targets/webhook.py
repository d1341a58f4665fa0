"""The webhook target: an external deployment system (CI job, KServe operator, internal platform)
is told, by a signed HTTP POST, what to deploy, at which traffic share, or what to take back.

Each request: a JSON body; `X-Signoff-Signature: sha256=<hex HMAC-SHA256 of the raw body>` with the
secret from the environment variable the workflow names (`secret_env`); `X-Signoff-Timestamp`
(also in the body, so it is signed); `Idempotency-Key`, stable per deployment step (the event_id
of the event that records it), so a receiver drops a repeated request. A request the receiver
acknowledged (2xx) is recorded and never sent again; connection errors, 5xx and 429 are retried
with capped exponential backoff; any other answer fails the step.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, Final, Literal
from urllib.parse import urlparse

import httpx
from pydantic import ConfigDict, Field, model_validator

from services.deployer.rollout import Release, Stage
from services.deployer.settings import DeployerSettings
from services.deployer.targets.base import Deps, TargetError, retrying
from shared.events import utcnow
from shared.transport import InsecureUrl, require_secure
from shared.workflow.schema import DeployInputs

NAME: Final = "webhook"
SIGNATURE = "X-Signoff-Signature"
TIMESTAMP = "X-Signoff-Timestamp"
IDEMPOTENCY_KEY = "Idempotency-Key"
ALLOW_HTTP_LOOPBACK = "DEPLOYER_WEBHOOK_ALLOW_HTTP_LOOPBACK"
VERIFIED_SCHEMES = ("file", "http", "https")  # any other scheme is passed on for the receiver to verify


class Inputs(DeployInputs):
    """`target: webhook`, with where the signed requests go and which variable holds the secret."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    target: Literal["webhook"] = NAME
    url: str = Field(description="Where the signed requests go")
    secret_env: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$",
                            description="The environment variable holding the HMAC secret (never the secret)")

    @model_validator(mode="before")
    @classmethod
    def _both(cls, data: Any) -> Any:
        # One message naming both keys (and what secret_env is), rather than two "required".
        if isinstance(data, dict) and not (data.get("url") and data.get("secret_env")):
            raise ValueError("target webhook needs url and secret_env (the name of the variable "
                             "holding the HMAC secret)")
        return data


def problems(inputs: Inputs, settings: DeployerSettings) -> list[str]:
    """A secret the deployer cannot read, or a URL it will not call: said at start-up, so the
    first deployment does not have to discover it."""
    found = []
    try:
        settings.secret(inputs.secret_env)
    except KeyError as exc:
        found.append(exc.args[0])
    try:
        checked_url(inputs.url, settings)
    except InsecureUrl as exc:
        found.append(str(exc))
    return found


def checked_url(url: str, settings: DeployerSettings) -> str:
    """The webhook's URL if requests carrying the release and its signature may go there:
    https://, or http:// to loopback when DEPLOYER_WEBHOOK_ALLOW_HTTP_LOOPBACK allows it."""
    return require_secure(url, "webhook url", settings.webhook_allow_http_loopback, ALLOW_HTTP_LOOPBACK)


def build(inputs: Inputs, deps: Deps) -> Webhook:
    return Webhook(inputs, deps)


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, signature: str) -> bool:
    """What a receiver does (constant-time compare); used by the tests' receiver too."""
    return hmac.compare_digest(sign(secret, body), signature)


def summary(release: Release | None) -> dict | None:
    """A release as a receiver sees it: with its attestation (the DSSE envelope the deployer
    signed; `signoff.verify.verify_envelope` checks it against the fetched artifact), or null."""
    if release is None:
        return None
    c, a = release.candidate, release.approval
    return {
        "model": c.model, "version": c.version, "submission_id": str(release.submission_id),
        "artifact_uri": c.artifact_uri, "artifact_sha256": c.artifact_sha256,
        "data_version": c.data_version, "code_commit": c.code_commit,
        "approval": {"event_id": str(a.event_id), "decided_by": a.decided_by, "mode": a.mode,
                     "reason": a.reason, "policy": a.policy.model_dump(mode="json"),
                     "votes": [v.model_dump(mode="json") for v in a.votes]},
        "attestation": release.attestation.model_dump(mode="json") if release.attestation else None,
    }


class Webhook:
    name = NAME

    def __init__(self, inputs: Inputs, deps: Deps) -> None:
        self.url, self.secret_env, self.deps = inputs.url, inputs.secret_env, deps

    def location(self, release: Release) -> str:
        return self.url

    async def prepare(self, release: Release, manifest: dict) -> str:
        """The receiver fetches the artifact itself; the deployer reads it first (a `file://` one
        in place, an `http(s)://` one downloaded under the allowed prefixes, then deleted), so a
        digest that changed since approval is refused here and nothing is signed or sent."""
        self._secret()  # refuse before anything starts (or is downloaded) when the secret is missing
        self._checked_url()  # or when the URL is not one the request may go to
        if urlparse(release.candidate.artifact_uri).scheme.lower() in VERIFIED_SCHEMES:
            (await self.deps.verified(release.candidate)).cleanup()
        return self.url

    async def shift(self, release: Release, stage: Stage, previous: Release | None, key: str) -> None:
        await self.send({"action": "deploy", **(summary(release) or {}), "stage": stage.name,
                         "traffic_percent": stage.traffic_percent, "previous": summary(previous)}, key)

    async def restore(self, model: str, release: Release | None, key: str, why: dict) -> None:
        await self.send({**why, "action": "restore", "model": model, "to": summary(release)}, key)

    async def retire(self, release: Release, key: str, why: dict) -> None:
        await self.send({**why, "action": "revoke", **(summary(release) or {})}, key)

    def _secret(self) -> bytes:
        try:
            return self.deps.settings.secret(self.secret_env)
        except KeyError as exc:
            raise TargetError(f"webhook {self.url}: {exc.args[0]}") from None

    def _checked_url(self) -> str:
        try:
            return checked_url(self.url, self.deps.settings)
        except InsecureUrl as exc:
            raise TargetError(str(exc)) from None  # the same every time: not retried

    async def send(self, body: dict, key: str) -> None:
        if self.deps.deliveries.delivered(key):
            return  # acknowledged before a restart or redelivery: never sent twice
        secret, url = self._secret(), self._checked_url()

        async def once() -> None:
            stamp = utcnow().isoformat()
            raw = json.dumps({**body, "idempotency_key": key, "timestamp": stamp},
                             sort_keys=True, separators=(",", ":")).encode()
            headers = {"Content-Type": "application/json", SIGNATURE: sign(secret, raw),
                       TIMESTAMP: stamp, IDEMPOTENCY_KEY: key}
            try:
                async with httpx.AsyncClient(timeout=self.deps.settings.webhook_timeout_seconds,
                                             follow_redirects=False) as http:
                    response = await http.post(url, content=raw, headers=headers)
            except httpx.TransportError as exc:
                raise TargetError(f"webhook {self.url}: {type(exc).__name__}: {exc}", transient=True) from exc
            if response.is_success:
                return
            status = response.status_code
            message = f"webhook {self.url} answered HTTP {status}: {response.text[:200]}"
            if status == 429 or status >= 500:
                raise TargetError(message, transient=True, retry_after=_retry_after(response))
            raise TargetError(message)

        await retrying(once, self.deps.policy, f"webhook {body['action']}")
        self.deps.deliveries.record_delivery(key)


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None
