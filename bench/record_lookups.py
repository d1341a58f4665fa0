"""What `bench.record` times of `signoff history MODEL` and revoke's lookup of a submission
(signoff.lookups, issue 15 part 3): the audit index caught up (nothing new) and asked, in-process,
as the CLI does; and, with `--before`, the same answers read from the topics as the CLI read them
before (signoff.client: history from offset 0, the submission from the end backwards). Each
checks its answer: the audited model's history is its six events (two decisions, alice's among
them, two deployments, the rollback asked for and done), and the submission found is 1.0.0's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial

from bench.record_measure import Expected, System, WrongAnswer
from shared import signing
from shared.events import DeploymentRolledBack, Event, ModelSubmitted, ReviewDecided
from signoff import client, lookups

HISTORY_EVENTS = 6  # bench.record_history.target_chain: on the history topics


def _check_history(system: System, want: Expected, events: list[Event]) -> None:
    approvers = {e.decided_by for e in events if isinstance(e, ReviewDecided)}
    if len(events) != HISTORY_EVENTS or want.approver not in approvers or not any(
            isinstance(e, DeploymentRolledBack) for e in events):
        raise WrongAnswer(f"{system.name}: history of {want.model} gave {len(events)} events "
                          f"({[e.type for e in events]}); expected {HISTORY_EVENTS} with {want.approver}'s "
                          "approval and the rollback")


def _check_submission(system: System, found: ModelSubmitted | None) -> None:
    if found is None or found.submission_id != system.submission_id:
        raise WrongAnswer(f"{system.name}: the lookup of submission {system.submission_id} found "
                          f"{found.submission_id if found else 'nothing'}")


def history_indexed(system: System, keyring: signing.Keyring, want: Expected) -> None:
    found = asyncio.run(lookups.history(system.operator, want.model, keyring, system.index))
    _check_history(system, want, found.value)


def submission_indexed(system: System, keyring: signing.Keyring) -> None:
    assert system.submission_id is not None
    found = asyncio.run(lookups.find_submission(system.operator, system.submission_id, keyring, system.index))
    _check_submission(system, found.value)


def history_from_topics(system: System, keyring: signing.Keyring, want: Expected) -> None:
    _check_history(system, want, asyncio.run(client.history(system.operator, want.model, keyring)))


def submission_from_topics(system: System, keyring: signing.Keyring) -> None:
    assert system.submission_id is not None
    found = asyncio.run(client.find_submission(system.operator, system.submission_id, keyring))
    _check_submission(system, found)


def measures(system: System, keyring: signing.Keyring, want: Expected, before: bool) -> dict[str, Callable[[], None]]:
    """The lookups' measures of one system (with `before`, the topic reads they replaced too)."""
    out: dict[str, Callable[[], None]] = {
        "history in-process (catch_up + index)": partial(history_indexed, system, keyring, want),
        "revoke lookup in-process (catch_up + index)": partial(submission_indexed, system, keyring)}
    if before:
        out |= {"history in-process, before (topics from offset 0)": partial(history_from_topics, system,
                                                                              keyring, want),
                "revoke lookup in-process, before (topics from the end back)": partial(
                    submission_from_topics, system, keyring)}
    return out

