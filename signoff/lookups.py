"""`signoff history MODEL` and revoke's lookup of a submission, answered from the audit index
(shared.audit) after an incremental catch-up, so their cost does not grow with the topics' history.

The catch-up reads only what is new since the last one (stored offsets; nothing new costs one
ListOffsets request) and verifies every signature as it indexes; the answer is then one SQLite
query on indexed columns (model, submission_id). The index needs the trust file: without
SIGNOFF_TRUSTED_KEYS (nothing to verify with, so nothing may be indexed) the lookups read the
topics from their beginning as before (signoff.client), and say so on stderr.

What the index answers is what the topic read answered, with the signatures checked as strictly
as the audit checks them (an approval signed by a key that may not approve is not a fact, so it is
not history either). Two differences, both deliberate: a decision's policy texts are stored once
per digest in the index, so they are put back from there (a decision written before decisions
carried their texts gets them too, when another decision under the same digest carried them); and
a submission id claimed by more than one model.submitted (a conflict the audit reports) resolves
to the claim the checks cite, as the audit's releases do, instead of simply the newest record.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from shared import signing, topics
from shared.audit.feed import catch_up
from shared.audit.index import Index, IndexTooOld
from shared.audit.views import Entry
from shared.events import Event, ModelSubmitted
from shared.kafka import KafkaAccess
from shared.values import PolicyDocuments
from signoff import client

T = TypeVar("T")
NO_TRUST_FILE = ("note: SIGNOFF_TRUSTED_KEYS is not set, so this read the topics from their beginning, signatures "
                 "unchecked; set it to the trust file to answer from the audit index (SIGNOFF_AUDIT_INDEX), "
                 "verified and read incrementally")
_CHECKS = (topics.CHECKS_PASSED, topics.CHECKS_FAILED)


@dataclass(frozen=True)
class Found(Generic[T]):
    """An answer, and what the user should know about where it came from (stderr), if anything."""

    value: T
    note: str | None = None


class IndexUnusable(Exception):
    """The audit index cannot answer (an earlier schema, or its catch-up ran out of time): the
    message names the fix."""


# -- answers from an index (no broker) -----------------------------------------------------------

def history_of(index: Index, model: str) -> list[Event]:
    """What `client.history` answers, from the index: the events of `model` on the history topics,
    each event_id once, in the order they happened (occurred_at, ties by event_id)."""
    entries = sorted(index.entries(model, client.HISTORY_TOPICS),
                     key=lambda e: (e.event.occurred_at, str(e.event.event_id)))
    out: dict[uuid.UUID, Event] = {}
    for entry in entries:
        out.setdefault(entry.event.event_id, _with_policy_texts(index, entry.event))
    return list(out.values())


def submission_of(index: Index, submission_id: uuid.UUID) -> ModelSubmitted | None:
    """The verified model.submitted of `submission_id`, or None. When several claim the id, the
    ones some checks event cites (what the services acted on) win, and of those the newest."""
    claims = index.claims(submission_id)
    if len(claims) > 1:
        cited = {c.event.causation_id for model in {e.event.key for e in claims}
                 for c in index.of_submission(model, submission_id, _CHECKS)}
        claims = [e for e in claims if e.event.event_id in cited] or claims
    newest = max(claims, key=_written, default=None)
    return newest.event if newest is not None and isinstance(newest.event, ModelSubmitted) else None


def _written(entry: Entry) -> tuple[object, ...]:
    return (entry.event.occurred_at, entry.partition, entry.offset)


def _with_policy_texts(index: Index, event: Event) -> Event:
    """The event with the policy texts its decision carried (the index keeps them once per digest)."""
    update = {}
    for name in ("policy", "workflow"):
        ref = getattr(event, name, None)
        if ref is None or getattr(ref, "documents", True) is not None:
            continue
        texts = index.policy(ref.digest)
        if texts is not None:
            update[name] = ref.model_copy(update={"documents": PolicyDocuments(workflow=texts.workflow,
                                                                               groups=texts.groups)})
    return event.model_copy(update=update) if update else event


# -- the lookups the CLI makes -------------------------------------------------------------------

@asynccontextmanager
async def caught_up(kafka: KafkaAccess, keyring: signing.Keyring, path: Path,
                    timeout: float = 300.0) -> AsyncIterator[Index]:
    """The index at `path`, caught up with the event topics (what is new since its last catch-up)."""
    try:
        index = Index.open(path)
    except IndexTooOld as exc:
        raise IndexUnusable(f"{exc} (SIGNOFF_AUDIT_INDEX)") from None
    try:
        try:
            await catch_up(kafka, keyring, index, timeout=timeout)
        except TimeoutError as exc:
            raise IndexUnusable(f"{exc} (SIGNOFF_AUDIT_INDEX: {path})") from None
        yield index
    finally:
        index.close()


async def history(kafka: KafkaAccess, model: str, keyring: signing.Keyring | None,
                  index_path: Path) -> Found[list[Event]]:
    """Every decision, deployment, rollback, revocation and drift of `model`: from the audit index
    when there is a trust file, from the topics otherwise."""
    if keyring is None:
        return Found(await client.history(kafka, model, None), NO_TRUST_FILE)
    async with caught_up(kafka, keyring, index_path) as index:
        return Found(history_of(index, model))


async def find_submission(kafka: KafkaAccess, submission_id: uuid.UUID, keyring: signing.Keyring | None,
                          index_path: Path) -> Found[ModelSubmitted | None]:
    """The submission `submission_id` (for a revocation): from the audit index when there is a
    trust file, from the topics otherwise."""
    if keyring is None:
        return Found(await client.find_submission(kafka, submission_id, None), NO_TRUST_FILE)
    async with caught_up(kafka, keyring, index_path) as index:
        return Found(submission_of(index, submission_id))
