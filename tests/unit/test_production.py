"""The model in production per name, from deployment.succeeded / .rolled_back / .revoked: newest
wins by occurred_at, whatever order (and however often) the events arrive."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.events import DeploymentRevoked, DeploymentRolledBack, DeploymentSucceeded, Event
from shared.production import ProductionBook, Unknown
from tests.unit import factories as f

T0 = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)
MODEL = "fraud-detector"


def deployed(version: str, at: datetime, accuracy: float, model: str = MODEL) -> DeploymentSucceeded:
    approval = f.decided(f.submitted(f.submission(f.candidate(model=model, version=version))))
    return DeploymentSucceeded.caused_by(approval, candidate=approval.candidate, target="model-store",
                                         location=f"/store/{model}/{version}", metrics={"accuracy": accuracy},
                                         occurred_at=at)


def rolled_back(to: DeploymentSucceeded | uuid.UUID, at: datetime, from_version: str | None = None,
                to_version: str = "1") -> DeploymentRolledBack:
    """What the deployer emits for `signoff rollback` (or, by the revoker, before a revocation)."""
    if isinstance(to, DeploymentSucceeded):
        to_version, to = to.candidate.version, to.submission_id
    return DeploymentRolledBack(submission_id=uuid.uuid4(), model=MODEL, from_version=from_version,
                                to_version=to_version, to_submission_id=to, target="model-store",
                                requested_by="oncall", reason="p99 latency doubled", occurred_at=at)


def revoked(release: DeploymentSucceeded, at: datetime, was_in_production: bool = True) -> DeploymentRevoked:
    return DeploymentRevoked(submission_id=release.submission_id, candidate=release.candidate,
                             requested_by="security", reason="trained on PII",
                             was_in_production=was_in_production, occurred_at=at)


def book_of(*events: Event) -> ProductionBook:
    book = ProductionBook()
    for event in events:
        book.apply(event)
    return book


def version(book: ProductionBook, model: str = MODEL) -> str | None:
    production = book.get(model)
    assert not isinstance(production, Unknown), production
    return production.candidate.version if production else None


V1 = deployed("1", T0, 0.95)
V2 = deployed("2", T0 + timedelta(hours=1), 0.97)


def test_nothing_in_production_until_a_deployment() -> None:
    assert ProductionBook().get(MODEL) is None and len(ProductionBook()) == 0


def test_a_deployment_is_production_with_its_candidate_and_metrics() -> None:
    production = book_of(V1).get(MODEL)
    assert production.candidate == V1.candidate
    assert production.metrics == {"accuracy": 0.95} and production.submission_id == V1.submission_id


@pytest.mark.parametrize(("older_at", "newer_at"), [
    (T0, T0 + timedelta(hours=1)),
    (T0, T0 + timedelta(microseconds=500_000)),
    (T0 - timedelta(microseconds=1), T0),
    (T0 + timedelta(seconds=9, microseconds=900_000), T0 + timedelta(seconds=10)),
])
@pytest.mark.parametrize("order", ["newer-first", "older-first"])
def test_production_is_the_newest_deployment_in_either_order(older_at, newer_at, order) -> None:
    older, newer = deployed("1.3.0", older_at, 0.91), deployed("1.4.0", newer_at, 0.93)
    book = book_of(*((newer, older) if order == "newer-first" else (older, newer)))
    assert book.get(MODEL).submission_id == newer.submission_id
    assert book.get(MODEL).metrics == {"accuracy": 0.93}


def test_times_in_other_zones_are_compared_as_instants() -> None:
    newer = deployed("1.4.0", T0.astimezone(timezone(timedelta(hours=-5))) + timedelta(minutes=1), 0.93)
    older = deployed("1.3.0", T0.astimezone(timezone(timedelta(hours=2))), 0.91)
    assert version(book_of(newer, older)) == "1.4.0"


def test_production_is_per_model() -> None:
    churn = deployed("0.9.0", T0 + timedelta(days=1), 0.8, model="churn-model")
    book = book_of(deployed("1.4.0", T0, 0.93), churn)
    assert (version(book), version(book, "churn-model")) == ("1.4.0", "0.9.0")
    assert len(book) == 2


def test_apply_says_whether_production_changed() -> None:
    book = ProductionBook()
    assert book.apply(V2) is True
    assert book.apply(V1) is False   # older: recorded as a release, production stays
    assert book.apply(V2) is False   # redelivered
    assert book.apply(f.checks_passed()) is False  # not a deployment event


def test_a_rollback_puts_the_release_it_names_back() -> None:
    back = rolled_back(V1, T0 + timedelta(hours=2), from_version="2")
    production = book_of(V1, V2, back).get(MODEL)
    assert production.submission_id == V1.submission_id and production.metrics == {"accuracy": 0.95}


def test_a_rollback_to_a_release_never_seen_deployed_leaves_production_unknown() -> None:
    """Not the release rolled back from (known not to be in production any more), and not None
    ("nothing in production"), which a comparison would read as nothing to be worse than."""
    to = uuid.uuid4()
    back = rolled_back(to, T0 + timedelta(hours=2), from_version="2", to_version="0.9")
    book = book_of(V1, V2, back)
    assert book.get(MODEL) == Unknown(MODEL, to, "0.9") and book.known(MODEL) is None and len(book) == 1
    assert f"rolled back to version 0.9 (submission {to}), whose deployment.succeeded" in book.get(MODEL).reason


def test_unknown_ends_when_the_release_is_seen_deployed_or_revoked_or_replaced() -> None:
    to = deployed("0.9", T0 - timedelta(hours=1), 0.91)
    back = rolled_back(to.submission_id, T0 + timedelta(hours=2), from_version="2", to_version="0.9")
    assert version(book_of(V1, V2, back, to)) == "0.9"  # its deployment arrived late: known now
    assert book_of(V1, V2, back, revoked(to, T0 + timedelta(hours=3))).get(MODEL) is None
    assert version(book_of(V1, V2, back, deployed("3", T0 + timedelta(hours=3), 0.9))) == "3"


def test_a_release_deployed_after_a_rollback_is_production() -> None:
    v3 = deployed("3", T0 + timedelta(hours=3), 0.96)
    assert version(book_of(V1, V2, rolled_back(V1, T0 + timedelta(hours=2)), v3)) == "3"


def test_a_rollback_older_than_the_newest_deployment_changes_nothing() -> None:
    late = rolled_back(V1, T0 + timedelta(minutes=30))  # happened before v2 was deployed
    assert version(book_of(V1, V2, late)) == "2"
    assert version(book_of(V1, late, V2)) == "2"


def test_revoking_the_live_release_with_nothing_to_restore_takes_the_model_out() -> None:
    book = book_of(V1, revoked(V1, T0 + timedelta(hours=1)))
    assert book.get(MODEL) is None and len(book) == 0


@pytest.mark.parametrize("order", ["rollback-first", "revocation-first"])
def test_revoking_the_live_release_restores_the_one_the_deployer_rolled_back_to(order) -> None:
    """The deployer emits deployment.rolled_back, then deployment.revoked; arrival order is free."""
    back = rolled_back(V1, T0 + timedelta(hours=2), from_version="2")
    gone = revoked(V2, T0 + timedelta(hours=2, microseconds=300))
    book = book_of(V1, V2, *((back, gone) if order == "rollback-first" else (gone, back)))
    assert version(book) == "1"


@pytest.mark.parametrize("order", ["rollback-first", "revocation-first"])
def test_a_rollback_after_a_revocation_puts_a_release_back(order) -> None:
    gone = revoked(V2, T0 + timedelta(hours=2))  # v2 taken out, nothing restored at the time
    back = rolled_back(V1, T0 + timedelta(hours=3))
    book = book_of(V1, V2, *((back, gone) if order == "rollback-first" else (gone, back)))
    assert version(book) == "1"


def test_revoking_a_release_that_is_not_in_production_changes_nothing() -> None:
    assert version(book_of(V1, V2, revoked(V1, T0 + timedelta(hours=2), was_in_production=False))) == "2"


def test_a_revocation_only_ends_what_it_found_in_production() -> None:
    """v1 revoked while live, then v2 deployed: v2 stays, whichever arrives first."""
    gone = revoked(V1, T0 + timedelta(minutes=30))
    assert version(book_of(V2, gone, V1)) == "2"
    assert version(book_of(gone, V1, V2)) == "2"


def test_a_revocation_at_the_instant_its_release_went_live_wins() -> None:
    assert book_of(V1, revoked(V1, V1.occurred_at)).get(MODEL) is None


def test_deployments_at_the_same_instant_are_ordered_the_same_way_in_any_order() -> None:
    a, b = deployed("a", T0, 0.9), deployed("b", T0, 0.91)
    assert version(book_of(a, b)) == version(book_of(b, a))


def test_redelivered_events_change_nothing() -> None:
    back, gone = rolled_back(V1, T0 + timedelta(hours=2)), revoked(V2, T0 + timedelta(hours=2, seconds=1))
    once = book_of(V1, V2, back, gone)
    again = book_of(V1, V2, back, gone, V2, back, V1, gone, V2)
    assert once.get(MODEL) == again.get(MODEL) and version(again) == "1"


# --- any order ------------------------------------------------------------------------------------

def history() -> list[Event]:
    """One model's life: 1, 2, 3 deployed; rollback to 2; 2 revoked while live (back to 1); 4
    deployed; 4 revoked with (say) nothing restorable; rollback to 3; a late canary revocation."""
    at = [T0 + timedelta(minutes=m) for m in range(12)]
    v1, v2, v3 = deployed("1", at[0], 0.90), deployed("2", at[1], 0.91), deployed("3", at[2], 0.92)
    v4 = deployed("4", at[6], 0.93)
    return [v1, v2, v3,
            rolled_back(v2, at[3], "3"),
            rolled_back(v1, at[4], "2"), revoked(v2, at[5]),
            v4, revoked(v4, at[7]),
            rolled_back(v3, at[8]),
            revoked(deployed("5", at[9], 0.5), at[10], was_in_production=False)]


@settings(max_examples=200, deadline=None)
@given(st.permutations(history()), st.lists(st.integers(0, 9), max_size=6))
def test_any_arrival_order_with_redeliveries_gives_the_same_production(events, repeats) -> None:
    arrived = events + [events[i] for i in repeats]
    in_order = book_of(*sorted(events, key=lambda e: e.occurred_at))
    assert book_of(*arrived).get(MODEL) == in_order.get(MODEL)
    assert version(in_order) == "3"


@settings(max_examples=200, deadline=None)
@given(st.permutations(history()), st.integers(1, 10))
def test_every_prefix_in_time_has_the_same_answer_in_any_order(events, n) -> None:
    """At every point in the history, the answer is what the events up to then say."""
    so_far = sorted(events, key=lambda e: e.occurred_at)[:n]
    expected = {1: "1", 2: "2", 3: "3", 4: "2", 5: "1", 6: "1", 7: "4", 8: None, 9: "3", 10: "3"}[n]
    assert version(book_of(*[e for e in events if e in so_far])) == expected


# --- the anchor of a carried-forward approval ----------------------------------------------------

def approved(version: str, at: datetime, mode: str | None, anchored_to: uuid.UUID | None = None) -> DeploymentSucceeded:
    return deployed(version, at, 0.94).model_copy(update={"approval_mode": mode, "anchored_to": anchored_to})


def anchor_version(book: ProductionBook) -> str | None:
    found = book.anchor(MODEL)
    return found.candidate.version if found else None


def test_a_release_a_person_approved_anchors_itself() -> None:
    assert anchor_version(book_of(approved("1", T0, "human"))) == "1"


def test_a_carried_forward_release_anchors_to_the_one_a_person_approved() -> None:
    human = approved("1", T0, "human")
    carried = approved("2", T0 + timedelta(hours=1), "automatic", anchored_to=human.submission_id)
    again = approved("3", T0 + timedelta(hours=2), "automatic", anchored_to=human.submission_id)
    assert anchor_version(book_of(human, carried, again)) == "1"  # not 2: no drift along the chain


def test_no_anchor_without_a_person_or_after_a_revocation() -> None:
    assert anchor_version(book_of(approved("1", T0, "automatic"))) is None  # approved by a rule
    assert anchor_version(book_of(approved("1", T0, None))) is None  # deployed before modes were kept
    human = approved("1", T0, "human")
    carried = approved("2", T0 + timedelta(hours=1), "automatic", anchored_to=human.submission_id)
    assert anchor_version(book_of(human, carried, revoked(human, T0 + timedelta(hours=2), False))) is None
    assert anchor_version(book_of()) is None


def test_after_a_rollback_the_anchor_follows_production() -> None:
    first, second = approved("1", T0, "human"), approved("2", T0 + timedelta(hours=1), "human")
    assert anchor_version(book_of(first, second, rolled_back(first, T0 + timedelta(hours=2), "2"))) == "1"


# --- the deployer's sequence, not a timestamp, orders production -------------------------------

def numbered(event: Event, sequence: int, at: datetime | None = None) -> Event:
    return event.model_copy(update={"sequence": sequence, **({"occurred_at": at} if at else {})})


FAR = datetime(2099, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("order", ["dated-first", "dated-last"])
def test_an_event_dated_2099_does_not_reorder_production(order) -> None:
    """A release dated in 2099 (a clock, or a producer, that chose the date) is production only
    until the deployer's next change: it is ordered by its number."""
    dated, after = numbered(deployed("1", FAR, 0.5), 1), numbered(V2, 2)
    book = book_of(*((dated, after) if order == "dated-first" else (after, dated)))
    assert version(book) == "2" and book.known(MODEL).metrics == {"accuracy": 0.97}


def test_a_rollback_or_revocation_is_ordered_by_its_number_too() -> None:
    v1, v2 = numbered(V1, 1, FAR), numbered(V2, 2, T0 - timedelta(days=1))
    assert version(book_of(v1, v2, numbered(rolled_back(V1, T0 - timedelta(days=9)), 3))) == "1"
    assert version(book_of(v1, v2, numbered(revoked(V2, T0 - timedelta(days=9)), 3))) is None
    assert version(book_of(v1, numbered(revoked(V2, FAR), 2), numbered(V2, 3))) == "2"  # revoked before


def test_events_without_a_number_order_before_every_numbered_one() -> None:
    """Events from before the deployer numbered them keep their order among themselves (by
    occurred_at) and come before the first numbered one, whatever their dates."""
    old_late, old_early = deployed("9", FAR, 0.9), deployed("8", T0, 0.8)
    assert version(book_of(old_late, old_early)) == "9"
    assert version(book_of(old_late, numbered(V1, 1, T0 - timedelta(days=1)))) == "1"


@settings(max_examples=200, deadline=None)
@given(st.permutations(range(10)), st.lists(st.integers(0, 9), max_size=6),
       st.lists(st.integers(-10**6, 10**6), min_size=10, max_size=10))
def test_numbered_history_with_any_dates_gives_the_same_production(order, repeats, minutes) -> None:
    """The life of `history`, numbered as the deployer emitted it, with any dates at all, in any
    arrival order and with redeliveries: the same production as the history in time order."""
    life = [numbered(e, i + 1, T0 + timedelta(minutes=m)) for i, (e, m) in enumerate(zip(history(), minutes,
                                                                                          strict=True))]
    arrived = [life[i] for i in order] + [life[i] for i in repeats]
    assert version(book_of(*arrived)) == "3"
    for n, expected in {4: "2", 5: "1", 8: None}.items():
        assert version(book_of(*[e for e in arrived if e.sequence <= n])) == expected
