"""Pure decisions about releases: how a deployment is staged, which version a rollback puts back,
what a revocation leaves in production. No I/O: state comes in, a decision goes out.

A *release* is a submission the deployer prepared on a target. Its `promoted` number orders the
times releases became production (0: never did); `health` says whether an automatic rollback may
choose it: a release rolled back from, or revoked, is not healthy.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import PlainSerializer

from shared.attestation import Envelope
from shared.events import Candidate, Frozen, Metrics, ReviewDecided
from shared.values import UtcDatetime
from shared.workflow.matching import Loaded
from shared.workflow.schema import DeployInputs

Health = Literal["healthy", "failed", "rolled_back", "revoked"]


def dump_inputs(inputs: DeployInputs) -> dict:
    """As the workflow file would say it: pydantic writes a timedelta as 'PT1S', which the
    workflow loader (rightly strict) does not read back; bakes are whole seconds."""
    data = inputs.model_dump(mode="json")
    data["stages"] = [{**st, "bake": f"{int(s.bake.total_seconds())}s"}
                      for st, s in zip(data["stages"], inputs.stages, strict=True)]
    return data


# The deploy step as stored in the deployer's state (it must read back what it wrote).
StoredInputs = Annotated[DeployInputs, PlainSerializer(dump_inputs, return_type=dict)]


class Release(Frozen):
    submission_id: uuid.UUID
    candidate: Candidate
    approval: ReviewDecided
    metrics: Metrics = {}
    deploy: StoredInputs
    location: str = ""
    health: Health = "healthy"
    promoted: int = 0
    # When its checks passed: the order of a model's submissions (None: stored before it was kept).
    checked_at: UtcDatetime | None = None
    # The approval attestation the deployer signed for it (None: prepared before attestations).
    attestation: Envelope | None = None

    @property
    def target(self) -> str:
        return self.deploy.target

    @property
    def version(self) -> str:
        return self.candidate.version


class Stage(Frozen):
    name: str
    traffic_percent: int
    bake_seconds: float = 0.0


FULL = Stage(name="full", traffic_percent=100)


class Plan(Frozen):
    """How the model's workflow deploys it (its deploy step, and the workflow's name and file
    digest for the manifest), or, without `inputs`, why nothing is deployed."""

    inputs: DeployInputs | None = None
    why: str = ""
    workflow: str = ""
    digest: str = ""

    @property
    def target(self) -> str:
        return self.inputs.target if self.inputs else "none"


def deploy_plan(loaded: Loaded | None, no_match: str) -> Plan:
    """The deploy step of the model's workflow, or why nothing is deployed. A workflow without a
    deploy step deploys nothing: approval alone is not a request to deploy."""
    if loaded is None:
        return Plan(why=f"{no_match}; nothing deployed")
    name, step = loaded.workflow.name, loaded.workflow.deploy
    if step is None:
        return Plan(why=f"workflow {name!r} has no deploy step; nothing deployed", workflow=name, digest=loaded.digest)
    return Plan(inputs=step.inputs, workflow=name, digest=loaded.digest)


def stages(inputs: DeployInputs) -> tuple[Stage, ...]:
    """direct: one stage at 100%; canary: the declared stages, the last at 100%."""
    if inputs.strategy == "direct":
        return (FULL,)
    return tuple(Stage(name=s.name, traffic_percent=s.traffic_percent, bake_seconds=s.bake.total_seconds())
                 for s in inputs.stages)


def choose_rollback(model: str, releases: list[Release], current: Release | None,
                    to_version: str | None, banned: Mapping[uuid.UUID, str]) -> Release | str:
    """The release to put back in production, or why there is none.

    `banned`: why each release whose submission, artifact digest or model version was revoked is
    banned (`StateStore.banned`). A revocation bans bytes, not only the release it named: another
    version or submission with the same digest is as banned, though its own health says nothing.

    Named version: the newest release of it, unless banned, revoked or already in production.
    Otherwise: the healthy, unbanned release that was most recently in production before the current one.
    """
    others = [r for r in releases if current is None or r.submission_id != current.submission_id]
    if to_version is not None:
        named = [r for r in releases if r.version == to_version]
        if not named:
            known = ", ".join(sorted({r.version for r in releases if r.promoted})) or "none"
            return f"{model} {to_version} was never deployed (deployed versions: {known})"
        release = max(named, key=lambda r: r.promoted)
        if release.health == "revoked":
            return f"{model} {to_version} was revoked; a revoked version is never redeployed"
        if release.submission_id in banned:
            return (f"{model} {to_version} cannot be restored: {banned[release.submission_id]}; a revoked "
                    "artifact is never redeployed")
        if current is not None and release.submission_id == current.submission_id:
            return f"{model} {to_version} is already in production"
        if not release.promoted:
            return f"{model} {to_version} never reached production; only a version that did can be restored"
        return release
    healthy = [r for r in others if r.health == "healthy" and r.promoted and r.submission_id not in banned]
    if not healthy:
        now = f" (in production: {current.version})" if current else " (nothing in production)"
        return f"nothing to roll back to: {model} has no earlier approved, healthy version{now}"
    return max(healthy, key=lambda r: r.promoted)


def after_revocation(model: str, releases: list[Release], current: Release | None,
                     revoked: uuid.UUID, banned: Mapping[uuid.UUID, str]) -> tuple[bool, Release | None]:
    """Whether `revoked` is in production, and if so what replaces it (None: nothing; a revoked
    model is taken out even when no other version can serve). The replacement is never a banned
    release: `banned` holds the revoked submission's digest and version already."""
    if current is None or current.submission_id != revoked:
        return False, None
    choice = choose_rollback(model, [r for r in releases if r.submission_id != revoked], current, None, banned)
    return True, choice if isinstance(choice, Release) else None
