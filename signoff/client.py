"""Talking to Signoff: publish a submission, follow it to its end, cast a review vote.

Any Kafka client can do what `submit` does by following the documented contract (README):
a JSON `model.submitted` event keyed by the model name, with CloudEvents headers (and, where the
services require it, a pipeline's signature: shared.signing).

Rollbacks and revocations are signed with an operator's key (`Identity`); the deployer takes who
asked from that signature. Reads verify signatures when given the trust file's keyring.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, RequestTimedOutError

from shared import codec, reader, signing, topics
from shared.audit.index import Index, IndexTooOld
from shared.events import Event, ModelSubmitted, RevocationRequested, RollbackRequested, Submission
from shared.kafka import KafkaAccess, unreachable
from signoff.errors import Unconfirmed
from signoff.timeline import Ending

SOURCE = "/signoff/cli"


async def submit(kafka: KafkaAccess, submission: Submission,
                 submission_id: uuid.UUID | None = None, signer: signing.Signer | None = None) -> ModelSubmitted:
    """Publish `model.submitted` (signed by the pipeline's `signer`, when given) and wait until
    every in-sync replica has it."""
    event = ModelSubmitted(submission_id=submission_id or uuid.uuid4(), submission=submission)
    await publish(kafka, [event], signer=signer)
    return event


@dataclass(frozen=True)
class Identity:
    """Who this process signs as: its key, and the principal the trust file names for it."""

    signer: signing.Signer
    principal: signing.Principal


class NotTrusted(LookupError):
    """This process' key is not in the trust file (or not of the role needed)."""


def identity(signer: signing.Signer, keyring: signing.Keyring, role: str) -> Identity:
    """The principal of `signer` in `keyring`, which must have `role`; NotTrusted otherwise."""
    trusted = keyring.keys.get(signer.kid)
    if trusted is None:
        raise NotTrusted(f"your key (kid {signer.kid}) is not in the trust file: the services would "
                         "dead-letter what it signs; ask whoever keeps the trust file to add it")
    if trusted.principal.role != role:
        raise NotTrusted(f"your key (kid {signer.kid}) is {trusted.principal.name}'s, of role "
                         f"{trusted.principal.role}; this needs a key of role {role}")
    return Identity(signer, trusted.principal)


async def publish(kafka: KafkaAccess, events: list[Event], source: str = SOURCE,
                  signer: signing.Signer | None = None) -> None:
    """Publish `events` in order, each signed by `signer` when given."""
    producer = AIOKafkaProducer(**kafka.client_kwargs(), acks="all",
                                enable_idempotence=True)
    try:
        await producer.start()
    except KafkaConnectionError:
        await producer.stop()
        raise unreachable(kafka) from None
    try:
        for event in events:
            record = codec.encode(event, source)
            if signer is not None:
                record = signer.sign(record)
            await producer.send_and_wait(
                record.topic, record.value, key=record.key,
                headers=[(k, v.encode()) for k, v in record.headers.items()],
            )
    finally:
        await producer.stop()


class NotFound(LookupError):
    """No submission or operation has this id."""


# Where an id first appears: a submission on model.submitted, a rollback on rollback.requested.
STARTS = (topics.MODEL_SUBMITTED, topics.ROLLBACK_REQUESTED)
# Producers' clocks may disagree a little: read from this much before the start of what is watched.
CLOCK_SKEW = timedelta(minutes=5)


async def started_at(kafka: KafkaAccess, submission_id: uuid.UUID, index: Path | None = None) -> datetime:
    """When the submission (or rollback operation) `submission_id` was published; NotFound when
    it never was. A submission the audit index at `index` holds (as far as it was caught up; it is
    not caught up here) costs one record read at the offset the index gives; otherwise its topics
    are read from the end backwards, so what is not indexed yet, being recent, is found at once."""
    subject = str(submission_id).encode()
    if (at := await _indexed_start(kafka, submission_id, index)) is not None:
        return at
    record = await reader.find_newest(kafka, STARTS,
                                      lambda r: dict(r.headers).get("ce_subject") == subject)
    if record is None:
        raise NotFound(f"no submission or rollback {submission_id} on {' or '.join(STARTS)}; "
                       "check the id that `signoff submit` (or `signoff rollback`) printed")
    return datetime.fromtimestamp(record.timestamp / 1000, UTC)


async def _indexed_start(kafka: KafkaAccess, submission_id: uuid.UUID, path: Path | None) -> datetime | None:
    """The broker's time of the record the index says claims `submission_id` (the earliest, when
    several do), re-read at its offset and its subject checked: the index only says where to look.
    None when there is no index, it does not hold the id, or the record is not there any more."""
    if path is None or not path.is_file():
        return None
    try:
        index = Index.open(path)
    except (IndexTooOld, sqlite3.Error):
        return None  # `signoff audit` says what to do about it; here it only costs a slower search
    try:
        claims = index.claims(submission_id)
    finally:
        index.close()
    subject, found = str(submission_id).encode(), []
    for claim in claims:
        record = await reader.read_at(kafka, claim.topic, claim.partition, claim.offset)
        if record is not None and dict(record.headers).get("ce_subject") == subject:
            found.append(datetime.fromtimestamp(record.timestamp / 1000, UTC))
    return min(found, default=None)


async def follow(kafka: KafkaAccess, submission_id: uuid.UUID,
                 timeout: float, keyring: signing.Keyring | None = None,
                 index: Path | None = None) -> AsyncIterator[Event]:
    """Yield the submission's events (each once) until it is deployed, rejected or failed (and
    any rollback or revocation asked for since has its outcome), or until `timeout` seconds pass.
    Reads the event topics from the submission's own time (less the clock skew), not from their
    beginning; it never stops before it has read what the topics held when it started, so a
    timeline that goes on after a deployment (a revocation) is shown whole. NotFound, at once,
    for an id that was never published. With a keyring, only events signed by a key trusted for
    their type are shown. `index`: the audit index, to find an older submission's start (`started_at`)."""
    since = await started_at(kafka, submission_id, index) - CLOCK_SKEW
    wanted = str(submission_id).encode()
    seen: set[uuid.UUID] = set()
    ending = Ending()
    async for record in reader.read(kafka, topics.EVENT_TOPICS, since=since,
                                    until=lambda: ending.done, timeout=timeout):
        if dict(record.headers).get("ce_subject") != wanted:
            continue
        event = reader.decode(record, keyring)
        if event is None or event.event_id in seen:
            continue  # not ours to judge (the services dead-letter it), or a redelivered duplicate
        seen.add(event.event_id)
        if ending.see(event):
            yield event


@dataclass(frozen=True)
class DeadLettered:
    """An operator's request the deployer refused by dead-lettering it (a rollback of a model it
    never deployed): the end of that operation, with the deployer's reason."""

    topic: str
    reason: str


# Where the deployer dead-letters the operators' requests it refuses (operators may read them).
OPERATION_DLQS = (topics.dlq(topics.ROLLBACK_REQUESTED), topics.dlq(topics.REVOCATION_REQUESTED))


async def follow_operation(kafka: KafkaAccess, operation_id: uuid.UUID, timeout: float,
                           keyring: signing.Keyring | None = None) -> AsyncIterator[Event | DeadLettered]:
    """`follow` an operator's rollback or revocation, and end it at once when the deployer
    dead-letters the request: otherwise a refused request would look pending until the timeout."""
    since = await started_at(kafka, operation_id) - CLOCK_SKEW
    wanted = str(operation_id).encode()
    seen: set[uuid.UUID] = set()
    ending = Ending()
    async for record in reader.read(kafka, (*topics.EVENT_TOPICS, *OPERATION_DLQS), since=since,
                                    until=lambda: ending.done, timeout=timeout):
        headers = dict(record.headers)
        if headers.get("ce_subject") != wanted:
            continue
        if record.topic in OPERATION_DLQS:
            reason = headers.get("dlq_reason", b"").decode(errors="replace")
            yield DeadLettered(record.topic, reason or "no reason given")
            return
        event = reader.decode(record, keyring)
        if event is None or event.event_id in seen:
            continue
        seen.add(event.event_id)
        if ending.see(event):
            yield event


async def deployed_models(kafka: KafkaAccess) -> set[str]:
    """The names of the models ever deployed or rolled back (the keys of those records): a rollback
    of any other name is refused by the deployer, so the CLI says so before sending it."""
    names: set[str] = set()
    async for record in reader.read(kafka, (topics.DEPLOYMENT_SUCCEEDED, topics.DEPLOYMENT_ROLLED_BACK)):
        if record.key:
            names.add(record.key.decode(errors="replace"))
    return names


async def read_events(kafka: KafkaAccess, topic_names: tuple[str, ...],
                      keep: Callable[[Any], bool], keyring: signing.Keyring | None = None) -> list[Event]:
    """The valid events of `topic_names`, from their beginning to where they end now, whose
    record `keep` accepts; each once, in the order they happened."""
    events: dict[uuid.UUID, Event] = {}
    for event in await reader.read_events(kafka, topic_names, keep=keep, keyring=keyring):
        events.setdefault(event.event_id, event)
    return list(events.values())


HISTORY_TOPICS = (
    topics.REVIEW_DECIDED, topics.DEPLOYMENT_PROGRESSED, topics.DEPLOYMENT_SUCCEEDED,
    topics.DEPLOYMENT_FAILED, topics.ROLLBACK_REQUESTED, topics.REVOCATION_REQUESTED,
    topics.DEPLOYMENT_ROLLED_BACK, topics.DEPLOYMENT_REVOKED, topics.DEPLOYMENT_SUPERSEDED,
    topics.DEPLOYMENT_DRIFTED,  # production changed by hand (an MLflow alias), and whether it was put back
)


async def history(kafka: KafkaAccess, model: str, keyring: signing.Keyring | None = None) -> list[Event]:
    """Every decision, deployment, rollback, revocation and drift of `model` (records keyed by it)."""
    key = model.encode()
    return await read_events(kafka, HISTORY_TOPICS, lambda r: r.key == key, keyring)


async def find_submission(kafka: KafkaAccess, submission_id: uuid.UUID,
                          keyring: signing.Keyring | None = None) -> ModelSubmitted | None:
    subject = str(submission_id).encode()
    record = await reader.find_newest(kafka, (topics.MODEL_SUBMITTED,),
                                      lambda r: dict(r.headers).get("ce_subject") == subject)
    event = reader.decode(record, keyring) if record is not None else None
    return event if isinstance(event, ModelSubmitted) else None


async def request_rollback(kafka: KafkaAccess, model: str, to_version: str | None,
                           operator: Identity, reason: str) -> RollbackRequested:
    """Publish rollback.requested, signed by `operator` (who is its requested_by); its
    submission_id is the new operation's id."""
    event = RollbackRequested(submission_id=uuid.uuid4(), model=model, to_version=to_version,
                              requested_by=operator.principal.name, reason=reason)
    await _publish_operation(kafka, event, operator, f"the rollback {event.submission_id}",
                             f"`signoff watch {event.submission_id}`")
    return event


async def _publish_operation(kafka: KafkaAccess, event: Event, operator: Identity, what: str, check: str) -> None:
    """Publish an operator's request; a broker that stops answering after it was sent leaves it
    unconfirmed (it may have been written), which the caller must be told, with how to check."""
    try:
        await publish(kafka, [event], signer=operator.signer)
    except (KafkaTimeoutError, RequestTimedOutError):
        raise Unconfirmed(what, check) from None


async def request_revocation(kafka: KafkaAccess, submission: ModelSubmitted, operator: Identity,
                             reason: str) -> RevocationRequested:
    """Publish revocation.requested about `submission` (found with `find_submission`), signed by
    `operator` (who is its requested_by)."""
    event = RevocationRequested(submission_id=submission.submission_id,
                                model=submission.submission.candidate.model,
                                requested_by=operator.principal.name, reason=reason)
    await _publish_operation(kafka, event, operator, f"the revocation of {event.submission_id}",
                             f"`signoff watch {event.submission_id}`")
    return event


def review(base_url: str, token: str | None, submission_id: uuid.UUID, decision: str,
           reason: str, break_glass: bool = False, timeout: float = 10.0) -> dict:
    """Cast a vote through the review-notifier's HTTP API as the person `token` authenticates
    (the answer's `approver`); raises with its message when refused."""
    try:
        response = httpx.post(
            f"{base_url.rstrip('/')}/reviews/{submission_id}/decision",
            json={"decision": decision, "reason": reason, "break_glass": break_glass},
            headers={"Authorization": f"Bearer {token}"} if token else {},
            timeout=timeout,
        )
    except (httpx.ConnectError, httpx.ConnectTimeout):
        raise  # never sent: the review-notifier is not there (errors.explain says so)
    except httpx.TransportError:
        # Sent, but no answer: the vote may have counted (it is recorded before the answer).
        raise Unconfirmed(f"your vote ({decision} on {submission_id})",
                          f"`signoff pending` (a review still listed has not counted it) or "
                          f"`signoff watch {submission_id}`") from None
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise ReviewRefused(response.status_code, str(detail))
    return response.json()


def pending(base_url: str, token: str, timeout: float = 10.0) -> list[dict]:
    """The open reviews waiting for the vote of the person `token` authenticates."""
    response = httpx.get(f"{base_url.rstrip('/')}/reviews", params={"pending": "me"},
                         headers={"Authorization": f"Bearer {token}"}, timeout=timeout)
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise ReviewRefused(response.status_code, str(detail))
    return list(response.json()["reviews"])


class ReviewRefused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail
