"""Summaries and the printed table, as pure functions of measured latencies (no I/O)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class RunResult:
    """One run of one system: N submissions sent, every one received, timed."""

    system: str
    mode: str  # "throughput" (as fast as possible) or "latency" (open loop at rate_per_s)
    count: int
    rate_per_s: float | None  # offered rate; None when sent as fast as possible
    p50_ms: float
    p99_ms: float
    max_ms: float
    throughput_per_s: float  # count / (last received - first sent)
    send_lag_max_ms: float  # how far the sender fell behind its schedule (open loop only)
    duplicates: int  # deliveries of an already received submission (at-least-once)
    cpu_ms: dict[str, float] = field(default_factory=dict)  # CPU ms per submission, per process
    other_load_cores: float | None = None  # CPU used meanwhile by processes outside the run

    def as_dict(self) -> dict:
        return asdict(self)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty, sorted sequence."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def summarize(system: str, mode: str, rate: float | None, sent: dict[str, float],
              received: dict[str, float], first_send: float, send_lag_max: float,
              duplicates: int, cpu_ms: dict[str, float] | None = None,
              other_load_cores: float | None = None) -> RunResult:
    """`sent` and `received` map submission id to time.monotonic() seconds, for the same ids."""
    if set(sent) != set(received):
        raise ValueError(f"{len(set(sent) - set(received))} submissions were never received")
    latencies = sorted(received[k] - sent[k] for k in sent)
    elapsed = max(received.values()) - first_send
    return RunResult(
        system=system, mode=mode, count=len(sent), rate_per_s=rate,
        p50_ms=percentile(latencies, 50) * 1e3, p99_ms=percentile(latencies, 99) * 1e3,
        max_ms=latencies[-1] * 1e3, throughput_per_s=len(sent) / elapsed,
        send_lag_max_ms=send_lag_max * 1e3, duplicates=duplicates, cpu_ms=cpu_ms or {},
        other_load_cores=other_load_cores,
    )


def table(signoff_tp: RunResult, relay_tp: RunResult, signoff_lat: RunResult,
          relay_lat: RunResult) -> str:
    """metric | signoff | bare relay | ratio (signoff / relay)."""
    rate = f"{signoff_lat.rate_per_s:g}/s, n={signoff_lat.count}"
    rows = [
        (f"p50 latency, ms (open loop {rate})", signoff_lat.p50_ms, relay_lat.p50_ms),
        (f"p99 latency, ms (open loop {rate})", signoff_lat.p99_ms, relay_lat.p99_ms),
        (f"max latency, ms (open loop {rate})", signoff_lat.max_ms, relay_lat.max_ms),
        ("throughput, deployments/s (flat out)", signoff_tp.throughput_per_s, relay_tp.throughput_per_s),
        ("p50 latency, ms (flat out, queueing)", signoff_tp.p50_ms, relay_tp.p50_ms),
        ("p99 latency, ms (flat out, queueing)", signoff_tp.p99_ms, relay_tp.p99_ms),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [f"{'metric':<{width}} | {'signoff':>9} | {'bare relay':>10} | {'signoff/relay':>13}",
             f"{'-' * width}-+-{'-' * 9}-+-{'-' * 10}-+-{'-' * 13}"]
    for name, ours, theirs in rows:
        lines.append(f"{name:<{width}} | {ours:>9.1f} | {theirs:>10.1f} | {ours / theirs:>13.2f}")
    return "\n".join(lines)


def ratios(runs: dict[str, RunResult]) -> dict[str, float]:
    """Signoff over relay: latency from the open-loop runs, throughput from the flat-out ones."""
    return {
        "p50_latency": runs["signoff_latency"].p50_ms / runs["relay_latency"].p50_ms,
        "p99_latency": runs["signoff_latency"].p99_ms / runs["relay_latency"].p99_ms,
        "throughput": runs["signoff_throughput"].throughput_per_s / runs["relay_throughput"].throughput_per_s,
    }


@dataclass(frozen=True)
class HopResult:
    """One hop of the path (the service that did the work), from the broker timestamps of the record
    it consumed and the one it produced: queueing at its consumer, its own work, its producer's send."""

    hop: str  # the service: validator, policy, deployer; or "path" for first to last topic
    source: str
    sink: str
    count: int  # submissions with a stamp on every topic of the path; the same for each hop
    p50_ms: float | None  # None when count is 0
    p99_ms: float | None

    def as_dict(self) -> dict:
        return asdict(self)


PATH = "path"  # the row spanning the whole path, first topic to last


def hops(stamps: dict[str, dict[str, int]], path: Sequence[tuple[str, str, str]]) -> list[HopResult]:
    """Per hop (name, source topic, sink topic) in `path` order, then the whole path: p50 and p99 of
    sink stamp - source stamp. `stamps` maps topic to submission id to the record's broker
    timestamp (CreateTime, ms, set by the client that produced it: one wall clock on one machine).

    Only submissions with a stamp on every topic of the path count, so every hop is over the same
    submissions and the hops' rows are comparable. A difference below zero (the wall clock stepped
    back between two stamps) is kept, not clipped: it shows in p50/p99 instead of hiding."""
    if not path:
        raise ValueError("a path needs at least one hop")
    chain = [path[0][1]] + [sink for _, _, sink in path]
    if [source for _, source, _ in path] != chain[:-1]:
        raise ValueError(f"the hops must join up, each source the previous sink: {list(path)}")
    complete = set.intersection(*(set(stamps.get(topic, {})) for topic in chain))
    rows = [*path, (PATH, chain[0], chain[-1])]
    out = []
    for name, source, sink in rows:
        spans = sorted(float(stamps[sink][s] - stamps[source][s]) for s in complete)
        out.append(HopResult(name, source, sink, len(spans),
                             percentile(spans, 50) if spans else None, percentile(spans, 99) if spans else None))
    return out


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    """None where there is no figure, or the relay's is 0 ms (below the stamps' 1 ms resolution)."""
    return None if ours is None or not theirs else ours / theirs


def hop_ratios(ours: list[HopResult], theirs: list[HopResult]) -> dict[str, dict[str, float | None]]:
    """Signoff over relay per hop (matched by position: the same services in the same order)."""
    return {a.hop: {"p50": _ratio(a.p50_ms, b.p50_ms), "p99": _ratio(a.p99_ms, b.p99_ms)}
            for a, b in zip(ours, theirs, strict=True)}


def hop_table(ours: list[HopResult], theirs: list[HopResult]) -> str:
    """hop | signoff p50 | relay p50 | ratio | signoff p99 | relay p99 | ratio | n (signoff/relay)."""
    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.0f}"

    def x(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    head = ("hop (ms, broker stamps)", "signoff p50", "relay p50", "ratio", "signoff p99", "relay p99", "ratio",
            "n")
    body = [(f"{a.hop} ({a.source} -> {a.sink})" if a.hop != PATH else f"whole path ({a.source} -> {a.sink})",
             ms(a.p50_ms), ms(b.p50_ms), x(_ratio(a.p50_ms, b.p50_ms)),
             ms(a.p99_ms), ms(b.p99_ms), x(_ratio(a.p99_ms, b.p99_ms)), f"{a.count}/{b.count}")
            for a, b in zip(ours, theirs, strict=True)]
    widths = [max(len(r[i]) for r in (head, *body)) for i in range(len(head))]

    def line(row: tuple[str, ...]) -> str:
        return " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                          for i, (c, w) in enumerate(zip(row, widths, strict=True)))

    return "\n".join([line(head), "-+-".join("-" * w for w in widths), *(line(r) for r in body)])
