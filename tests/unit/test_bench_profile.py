"""py-spy's collapsed stacks into the functions with the most samples (bench/profile.py)."""

from __future__ import annotations

from bench.profile import parse_collapsed, render, top

RAW = """\
main (app.py:1);handle (h.py:5);decode (broker.py:9);verify (sig.py:3) 6
main (app.py:1);handle (h.py:5);decode (broker.py:9);loads (json.py:2) 3
main (app.py:1);handle (h.py:5);decode (broker.py:9) 1
main (app.py:1);idle (loop.py:7) 10
not a stack line
"""


def test_own_samples_rank_and_totals_count_every_frame_on_the_stack() -> None:
    samples, rows = top(parse_collapsed(RAW), n=3)
    assert samples == 20
    assert rows == [("idle (loop.py:7)", 10, 10), ("verify (sig.py:3)", 6, 6), ("loads (json.py:2)", 3, 3)]
    _, everything = top(parse_collapsed(RAW), n=10)
    assert ("decode (broker.py:9)", 1, 10) in everything


def test_a_recursive_frame_counts_once_per_stack_in_its_total() -> None:
    _, rows = top(parse_collapsed("f (a.py:1);f (a.py:1);g (a.py:2) 4\n"), n=5)
    assert dict((f, total) for f, _, total in rows) == {"g (a.py:2)": 4}
    _, rows = top(parse_collapsed("f (a.py:1);f (a.py:1) 4\n"), n=5)
    assert rows == [("f (a.py:1)", 4, 4)]


def test_the_rendered_report_names_the_process_and_the_shares() -> None:
    text = render("policy", parse_collapsed(RAW), n=2)
    assert text.splitlines()[0].startswith("policy: 20 samples")
    assert " 50.0%  50.0%  idle (loop.py:7)" in text
