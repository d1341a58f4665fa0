"""bench.record's histories are what the audit index and `signoff verify` accept, and its checks
catch a wrong answer: the benchmark measures real answers, never an error path. (No timing here.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bench import record_history as history
from bench import record_measure as m
from shared import signing
from shared.audit.index import Index
from signoff.verify import verify
from tests import keys
from tests.unit.audit_log import Log, keyring

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def signers() -> dict[str, signing.Signer]:
    return {role: keys.signer(name) for role, name in keys.DEFAULT.items()}


def indexed(tmp_path: Path, *chains: history.Chain) -> Index:
    log = Log()
    for chain in chains:
        for record in history.signed(chain.events, signers()):
            log.append(record)
    index = Index.open(tmp_path / "audit.sqlite")
    progress = log.feed(index)
    assert (progress.indexed, progress.problems) == (sum(len(c.events) for c in chains), 0)
    return index


def test_the_histories_are_indexed_whole_and_answer_as_expected(tmp_path: Path) -> None:
    store = tmp_path / "store"
    target, one = history.target_chain("audited-model", T0, store, keys.signer("deployer"), 8192)
    busy = history.busy_chain("model-0001", T0 - timedelta(days=200), store, keys.signer("deployer"), revoke=True)
    assert len(busy.events) == 100
    index = indexed(tmp_path, target, busy)
    m.check_answer(index, m.Expected("audited-model", T0 + timedelta(hours=3), "1.0.0", "alice"))
    m.check_answer(index, m.Expected("audited-model", T0 + timedelta(hours=1, minutes=30), "2.0.0",
                                     "policy:default/auto", rolled_back=False))
    m.check_answer(index, m.Expected("model-0001", T0, "5.2.0", "bob"))
    with pytest.raises(m.WrongAnswer, match="expected 2.0.0"):
        m.check_answer(index, m.Expected("audited-model", T0 + timedelta(hours=3), "2.0.0", "alice"))
    assert one.version == "1.0.0"


def test_the_store_holds_what_the_deployer_attested(tmp_path: Path) -> None:
    store = tmp_path / "store"
    history.target_chain("audited-model", T0, store, keys.signer("deployer"), 8192)
    history.busy_chain("model-0001", T0, store, keys.signer("deployer"), revoke=False)
    ring = keyring()
    verdict = verify(store / "audited-model" / "1.0.0", ring)
    assert verdict.ok and "audited-model 1.0.0 " in verdict.reason and "approved by alice" in verdict.reason
    assert verify(store / "audited-model" / "2.0.0", ring).ok
    assert sorted(p.name for p in (store / "model-0001").iterdir()) == ["5.2.0", "5.3.0"]  # the last two only
    assert verify(store / "model-0001" / "5.2.0", ring).ok
    assert not (store / ".incoming").exists()


def test_the_summary_is_the_median_p95_and_ratio_of_the_samples() -> None:
    timings = m.Timings()
    for ms in (10, 20, 30, 40):
        timings.add("q", "empty", ms / 1e3)
        timings.add("q", "full", 3 * ms / 1e3)
    timings.add("python -c pass", "-", 0.02)
    rows = m.summary(timings)
    assert rows["q"]["empty"]["median_ms"] == pytest.approx(25)
    assert rows["q"]["full"]["p95_ms"] == pytest.approx(120)
    assert rows["q"]["ratio_full_over_empty"] == pytest.approx(3)
    assert rows["q"]["under_1s"] and rows["python -c pass"]["under_1s"]
    assert "3.00" in m.table(rows)


def test_the_lookups_answers_are_checked(tmp_path: Path) -> None:
    """bench.record_lookups accepts the audited model's history and 1.0.0's submission as the
    index answers them, and refuses another model's history or another submission."""
    from bench import record_lookups
    from signoff import lookups

    store = tmp_path / "store"
    target, one = history.target_chain("audited-model", T0, store, keys.signer("deployer"), 8192)
    busy = history.busy_chain("model-0001", T0 - timedelta(days=200), store, keys.signer("deployer"), revoke=True)
    index = indexed(tmp_path, target, busy)
    want = m.Expected("audited-model", T0 + timedelta(hours=3), "1.0.0", "alice")
    system = m.System("full", None, tmp_path / "audit.sqlite", store, {}, one.submitted.submission_id)  # type: ignore[arg-type]
    record_lookups._check_history(system, want, lookups.history_of(index, "audited-model"))
    with pytest.raises(m.WrongAnswer, match="expected 6"):
        record_lookups._check_history(system, want, lookups.history_of(index, "model-0001"))
    record_lookups._check_submission(system, lookups.submission_of(index, one.submitted.submission_id))
    other = busy.events[0].submission_id
    with pytest.raises(m.WrongAnswer, match="found"):
        record_lookups._check_submission(system, lookups.submission_of(index, other))
