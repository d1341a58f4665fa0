"""Where bench.run's latency goes per hop: from each record's broker timestamp on the path's topics,
per service the p50/p99 of (stamp of the record it produced - stamp of the record it consumed), over
the submissions stamped on every topic, Signoff over relay. (Arithmetic only; no timing here.)"""

from __future__ import annotations

import pytest

from bench import RELAY_HOPS, summary
from bench.stats import PATH, HopResult, hop_ratios, hop_table, hops

PATH_ABCD = (("validator", "a", "b"), ("policy", "b", "c"), ("deployer", "c", "d"))


def stamped(*rows: tuple[str, int, int, int, int]) -> dict[str, dict[str, int]]:
    """(submission, stamp on a, b, c, d) rows -> topic -> submission -> stamp."""
    return {topic: {subject: times[i] for subject, *times in rows} for i, topic in enumerate("abcd")}


def by_hop(results: list[HopResult]) -> dict[str, HopResult]:
    return {r.hop: r for r in results}


def test_each_hop_is_its_sink_stamp_minus_its_source_stamp_in_path_order_then_the_whole_path() -> None:
    results = hops(stamped(("s1", 1000, 1003, 1010, 1030)), PATH_ABCD)
    assert [(r.hop, r.source, r.sink) for r in results] == [
        ("validator", "a", "b"), ("policy", "b", "c"), ("deployer", "c", "d"), (PATH, "a", "d")]
    assert [(r.p50_ms, r.p99_ms, r.count) for r in results] == [(3, 3, 1), (7, 7, 1), (20, 20, 1), (30, 30, 1)]


def test_percentiles_do_not_depend_on_the_order_submissions_were_stamped_in() -> None:
    # validator hops 1..100 ms, given in a scrambled order: p50 is the 50th smallest, p99 the 99th
    rows = [(f"s{i}", 0, i, i + 1, i + 2) for i in (list(range(100, 50, -1)) + list(range(1, 51)))]
    validator = by_hop(hops(stamped(*rows), PATH_ABCD))["validator"]
    assert (validator.p50_ms, validator.p99_ms, validator.count) == (50, 99, 100)


def test_a_submission_missing_a_stamp_on_any_topic_counts_in_no_hop() -> None:
    stamps = stamped(("s1", 0, 1, 2, 3), ("s2", 0, 500, 600, 700))
    del stamps["d"]["s2"]  # s2's deployment not read: its slow validator hop must not count either
    stamps["b"]["stray"] = 5  # stamped on one topic only (say, read mid-path)
    results = hops(stamps, PATH_ABCD)
    assert {r.count for r in results} == {1}
    assert by_hop(results)["validator"].p99_ms == 1


def test_no_complete_submission_gives_no_figures_rather_than_failing() -> None:
    results = hops({"a": {"s1": 0}, "b": {"s1": 1}}, PATH_ABCD)  # no topic c or d at all
    assert [(r.count, r.p50_ms, r.p99_ms) for r in results] == [(0, None, None)] * 4
    assert "-" in hop_table(results, results).splitlines()[2]


def test_a_stamp_before_its_predecessor_is_kept_negative_not_clipped_or_dropped() -> None:
    # the wall clock stepped back between two producers' stamps: the figure must show it
    results = by_hop(hops(stamped(("s1", 1000, 990, 1000, 1005)), PATH_ABCD))
    assert results["validator"].p50_ms == -10 and results["validator"].count == 1
    assert results[PATH].p50_ms == 5


def test_hops_that_do_not_join_up_are_refused() -> None:
    with pytest.raises(ValueError, match="join up"):
        hops({}, (("validator", "a", "b"), ("policy", "c", "d")))
    with pytest.raises(ValueError, match="at least one hop"):
        hops({}, ())


def test_the_relays_hops_join_up_and_are_named_like_signoffs_services() -> None:
    assert [h.hop for h in hops({}, RELAY_HOPS)] == ["validator", "policy", "deployer", PATH]


def test_ratios_are_signoff_over_relay_and_none_where_the_relay_took_under_a_millisecond() -> None:
    ours = hops(stamped(("s1", 0, 10, 12, 20)), PATH_ABCD)
    theirs = hops(stamped(("s1", 0, 2, 2, 6)), PATH_ABCD)
    ratios = hop_ratios(ours, theirs)
    assert ratios["validator"] == {"p50": 5.0, "p99": 5.0}
    assert ratios["policy"] == {"p50": None, "p99": None}  # 2 ms over 0 ms: no ratio, not a crash
    row = next(line for line in hop_table(ours, theirs).splitlines() if line.startswith("validator"))
    assert [c.strip() for c in row.split("|")][1:] == ["10", "2", "5.00", "10", "2", "5.00", "1/1"]


def test_the_summary_lists_each_services_hop_and_reads_results_without_hops() -> None:
    base = {"ratios_signoff_over_relay": {"p50_latency": 2.0, "p99_latency": 3.0, "throughput": 0.5}}
    assert len(summary.rows(base, None, None, None)) == 3 + 3  # older results.json: no hop rows
    ours = hops(stamped(("s1", 0, 10, 12, 20)), PATH_ABCD)
    theirs = hops(stamped(("s1", 0, 2, 2, 6)), PATH_ABCD)
    results = base | {"hops": {"signoff": [h.as_dict() for h in ours], "relay": [h.as_dict() for h in theirs],
                               "ratios_signoff_over_relay": hop_ratios(ours, theirs)}}
    rows = summary.rows(results, None, None, None)
    assert ("  validator hop p50, signoff/relay (10 ms vs 2 ms)", "5.00", "") in rows
    assert ("  policy hop p50, signoff/relay (2 ms vs 0 ms)", "-", "") in rows
    assert not any("path" in r[0] for r in rows)
