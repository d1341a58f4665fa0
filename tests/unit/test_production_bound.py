"""The production book is bounded (shared.production: KEEP): per model it keeps the newest releases
plus, while they answer, the release in production and its anchor. A rollback further back answers
Unknown (never None, never another release); in any arrival order the answers are the whole
history's or fail-closed; a snapshot of the bounded book restores to the same answers."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.events import DeploymentSucceeded, Event
from shared.production import KEEP, ProductionBook, Unknown
from tests.unit.test_production import MODEL, T0, approved, deployed, numbered, revoked, rolled_back

UNBOUNDED = None


def releases(n: int, model: str = MODEL) -> list[DeploymentSucceeded]:
    """n releases of `model`, numbered 1..n by the deployer, each approved by a person."""
    return [deployed(str(i), T0 + timedelta(minutes=i), 0.9, model=model).model_copy(
        update={"approval_mode": "human", "sequence": i}) for i in range(1, n + 1)]


def book_of(*events: Event, keep: int | None = 2, book: ProductionBook | None = None) -> ProductionBook:
    book = book if book is not None else ProductionBook(keep=keep)
    for event in events:
        book.apply(event)
    return book


def back_to(release: DeploymentSucceeded, sequence: int) -> Event:
    return numbered(rolled_back(release, T0 + timedelta(days=1)), sequence)


def kept(book: ProductionBook) -> int:
    return len(book.to_snapshot()["releases"])


def test_the_book_keeps_production_and_keep_earlier_releases_per_model() -> None:
    assert KEEP == 50
    book = book_of(*releases(60), keep=KEEP)
    kept(book)  # each release is encoded once for snapshots, and forgotten with it
    book = book_of(*releases(100), *releases(100, model="churn"), keep=KEEP, book=book)
    assert kept(book) == 2 * (KEEP + 1) and len(book._encoded) == kept(book)
    assert book.known(MODEL).candidate.version == "100" and book.known("churn").candidate.version == "100"


def test_a_rollback_within_keep_is_exact_and_further_back_is_unknown() -> None:
    v = releases(6)  # keep=2: 6, 5 and 4 kept
    assert book_of(*v, back_to(v[3], 7)).known(MODEL) == book_of(*v, back_to(v[3], 7), keep=UNBOUNDED).known(MODEL)
    assert book_of(*v, back_to(v[3], 7)).known(MODEL).candidate.version == "4"
    gone = book_of(*v, back_to(v[2], 7)).get(MODEL)  # 3 was dropped
    assert isinstance(gone, Unknown) and gone.submission_id == v[2].submission_id
    assert kept(book_of(*v)) == 3


def test_a_release_dropped_is_never_kept_again_even_redelivered_or_rolled_back_to() -> None:
    v = releases(6)
    book = book_of(*v, back_to(v[0], 7), v[0])
    assert isinstance(book.get(MODEL), Unknown) and kept(book) == 3


def test_production_and_its_anchor_are_kept_however_old() -> None:
    v = releases(6)
    # The rollback (numbered after them all) arrives before the releases deployed after 1: 1 stays.
    book = book_of(v[0], back_to(v[0], 7), *v[1:])
    assert book.known(MODEL).candidate.version == "1"
    human = v[0]
    carried = [numbered(approved(str(i), T0, "automatic", anchored_to=human.submission_id), i) for i in range(2, 9)]
    book = book_of(human, *carried)
    assert book.known(MODEL).candidate.version == "8" and book.anchor(MODEL) is not None
    assert book.anchor(MODEL).submission_id == human.submission_id and kept(book) == 4  # 3 newest + anchor


def test_revocations_of_dropped_releases_are_dropped_and_answers_stay_fail_closed() -> None:
    v = releases(40)
    gone = [numbered(revoked(r, T0 + timedelta(days=2)), 40 + i) for i, r in enumerate(v[:30], 1)]
    assert len(book_of(*v, *gone).to_snapshot()["revoked"]) == 30  # not behind the horizon yet
    later = [r.model_copy(update={"sequence": 70 + i, "submission_id": uuid.uuid4()}) for i, r in enumerate(v[:3], 1)]
    assert len(book_of(*v, *gone, *later).to_snapshot()["revoked"]) == 0  # they are now, and so their releases
    rolled = book_of(*v, *gone, back_to(v[1], 100)).get(MODEL)
    assert isinstance(rolled, Unknown)  # 2 was revoked (None) but is not kept: Unknown, fail-closed
    v = releases(3)
    newer = [v[1].model_copy(update={"sequence": 4 + i, "submission_id": uuid.uuid4()}) for i in (1, 2)]
    was_kept = [*v, numbered(revoked(v[0], T0), 4), *newer]
    assert len(book_of(*was_kept).to_snapshot()["revoked"]) == 0  # dropped with its release
    v = releases(40)
    live = book_of(*v, numbered(revoked(v[-1], T0 + timedelta(days=2)), 41))
    assert live.get(MODEL) is None and len(live.to_snapshot()["revoked"]) == 1  # kept with its release


# --- any order ------------------------------------------------------------------------------------

@st.composite
def lives(draw: st.DrawFn) -> list[Event]:
    """A model's life as the deployer numbers it: deployments (by a person, or carried forward from
    the last one a person approved), rollbacks to any earlier release, revocations of any."""
    events: list[Event] = []
    deployed: list[DeploymentSucceeded] = []
    human: uuid.UUID | None = None
    for sequence in range(1, draw(st.integers(1, 16)) + 1):
        step = draw(st.sampled_from(["human", "carried", "rollback", "revoke"] if deployed else ["human"]))
        if step in ("human", "carried"):
            mode, anchor = ("human", None) if step == "human" or human is None else ("automatic", human)
            release = numbered(approved(str(sequence), T0, mode, anchored_to=anchor), sequence)
            assert isinstance(release, DeploymentSucceeded)
            human = release.submission_id if mode == "human" else human
            deployed.append(release)
            events.append(release)
        elif step == "rollback":
            events.append(back_to(draw(st.sampled_from(deployed)), sequence))
        else:
            events.append(numbered(revoked(draw(st.sampled_from(deployed)), T0), sequence))
    return events


def fail_closed_or_exact(bounded: ProductionBook, full: ProductionBook) -> None:
    got, exact = bounded.get(MODEL), full.get(MODEL)
    if isinstance(got, Unknown):  # only for what production is: the release the history put there
        assert exact is None or exact.submission_id == got.submission_id
    else:
        assert got == exact
    assert bounded.anchor(MODEL) in (None, full.anchor(MODEL))


@settings(max_examples=300, deadline=None)
@given(lives(), st.data(), st.integers(0, 3))
def test_any_arrival_order_answers_the_whole_history_or_fails_closed(life, data, keep) -> None:
    arrived = data.draw(st.permutations(life))
    arrived += data.draw(st.lists(st.sampled_from(life), max_size=4))  # redeliveries
    bounded, full = book_of(*arrived, keep=keep), book_of(*life, keep=UNBOUNDED)
    fail_closed_or_exact(bounded, full)
    assert kept(bounded) <= keep + 3  # the newest, production and its anchor
    in_order = book_of(*life, keep=keep)
    fail_closed_or_exact(in_order, full)
    deployments = [e for e in life if isinstance(e, DeploymentSucceeded)]
    if len(deployments) <= keep + 1:  # nothing to drop: exactly the whole history's answers
        assert bounded.get(MODEL) == full.get(MODEL) and bounded.anchor(MODEL) == full.anchor(MODEL)


@settings(max_examples=150, deadline=None)
@given(lives(), st.data(), st.integers(0, 3))
def test_a_snapshot_of_the_bounded_book_restores_to_the_same_answers(life, data, keep) -> None:
    arrived = data.draw(st.permutations(life))
    cut = data.draw(st.integers(0, len(arrived)))
    book = book_of(*arrived[:cut], keep=keep)
    restored = ProductionBook(keep=keep)
    restored.restore(json.loads(json.dumps(book.to_snapshot())))
    assert (restored.get(MODEL), restored.anchor(MODEL), len(restored)) == (book.get(MODEL), book.anchor(MODEL),
                                                                          len(book))
    assert restored.to_snapshot() == book.to_snapshot()
    for event in arrived[cut:]:  # and goes on as the book it was taken from
        book.apply(event)
        restored.apply(event)
    assert restored.to_snapshot() == book.to_snapshot()
    fail_closed_or_exact(restored, book_of(*life, keep=UNBOUNDED))
