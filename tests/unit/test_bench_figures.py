"""The arithmetic and ordering behind bench.startup, bench.burst, bench.scale and bench.summary (issue
15's figures): the history the start-up bench publishes is oldest first with each model's order
kept, and the ratios are the right way round. (No timing here.)"""

from __future__ import annotations

from pathlib import Path

from bench import burst, scale, startup, summary
from bench.stats import RunResult
from shared import codec
from tests import keys


def run(count: int, throughput: float, cpu: dict[str, float] | None = None) -> RunResult:
    return RunResult("signoff", "burst", count, None, 1000.0, 2000.0, 3000.0, throughput, 0.0, 0, cpu or {})


def test_the_start_up_history_is_oldest_first_with_each_models_order_kept_and_the_audited_model_last(
        tmp_path: Path) -> None:
    events, one = startup.history_events(3, tmp_path / "store", keys.signer("deployer"))
    assert len(events) == 3 * 100 + 11
    times = [e.occurred_at for e in events]
    assert times == sorted(times), "Kafka timestamps must not go back: offsets_for_times would land early"
    models = [codec.encode(e, "/test").key for e in events]  # the record key: the model's name
    assert len(set(models[:-11])) == 3 and set(models[-11:]) == {startup.MODEL.encode()}
    assert one.submitted in events[-11:]
    for model in set(models[:-11]):  # the sort is stable: a model's events in the order its chain made them
        own = [e for e, k in zip(events, models, strict=True) if k == model]
        assert [e.type for e in own[:3]] == ["signoff.model.submitted", "signoff.checks.passed",
                                          "signoff.review.requested"]


def test_the_burst_drain_time_is_count_over_throughput_and_the_ratio_is_signoff_over_relay() -> None:
    ours, theirs = run(1000, 20.0), run(1000, 50.0)
    assert burst.drained_s(ours) == 50.0
    report = {"signoff": ours.as_dict() | {"drained_seconds": 50.0},
              "relay": theirs.as_dict() | {"drained_seconds": 20.0}}
    last = burst.table(report).splitlines()[2]
    assert last.split("|")[-1].strip() == "2.50"


def test_the_second_replicas_cpu_share_is_per_service() -> None:
    result = run(10, 1.0, {"validator#1": 3.0, "validator#2": 1.0, "policy#1": 2.0, "policy#2": 0.0,
                           "bench driver": 5.0})
    assert scale.shares(result) == {"validator": 0.25, "policy": 0.0}


def test_the_summary_says_what_did_not_run_and_puts_each_ratio_beside_its_goal() -> None:
    assert [r[1] for r in summary.rows(None, None, None, None)] == ["not run"] * 4
    startup_report = {"setup": {"full": {"events": 100_011}},
                      "summary": {"start-up validator": {"empty": {"median_ms": 1000.0},
                                                         "full": {"median_ms": 3000.0},
                                                         "ratio_full_over_empty": 3.0}}}
    scale_report = {"one_replica": {"count": 2000, "throughput_per_s": 20.0},
                    "two_replicas": {"throughput_per_s": 30.0}, "ratio_throughput_two_over_one": 1.5}
    rows = summary.rows(None, None, startup_report, scale_report)
    assert ("start-up validator, 100,011 events / empty (3000 ms vs 1000 ms)", "3.00", "~1 (<= 1.5)") in rows
    assert rows[-1][1] == "1.50" and "30.0/s vs 20.0/s" in rows[-1][0]
