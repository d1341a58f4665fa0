"""`python -m bench.summary`: issue 15's figures from the last `make bench`, in one table beside its
goals, read from .data/bench/*.json (results, burst, startup, scale). A benchmark that did not run
(or failed, and so left no file) shows as such; nothing here measures anything.
"""

from __future__ import annotations

import json
import sys

from bench.infra import ROOT

OUT = ROOT / ".data" / "bench"
FLAT = 1.5  # a full/empty ratio up to this reads as "about the same time" (issue 15 part 3)


def _load(name: str) -> dict | None:
    path = OUT / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def rows(results: dict | None, burst: dict | None, startup: dict | None,
         scale: dict | None) -> list[tuple[str, str, str]]:
    """(figure, measured, goal) for each figure; pure, for the table."""
    out: list[tuple[str, str, str]] = []
    if results is None:
        out.append(("bench.run (latency and throughput vs relay)", "not run", ""))
    else:
        r = results["ratios_signoff_over_relay"]
        out += [("p50 latency, signoff/relay", f"{r['p50_latency']:.2f}", "<= 1.5"),
                ("p99 latency, signoff/relay", f"{r['p99_latency']:.2f}", "<= 2"),
                ("throughput flat out, signoff/relay", f"{r['throughput']:.2f}", ">= 0.6")]
        out += _hop_rows(results.get("hops"))  # absent in results.json from before the per-hop stamps
    if burst is None:
        out.append(("bench.burst", "not run", ""))
    else:
        out.append((f"burst of {burst['signoff']['count']} drain time, signoff/relay "
                    f"({burst['signoff']['drained_seconds']:.0f} s vs {burst['relay']['drained_seconds']:.0f} s)",
                    f"{burst['ratio_drain_time_signoff_over_relay']:.2f}", "<= 2"))
    if startup is None:
        out.append(("bench.startup", "not run", ""))
    else:
        events = startup["setup"]["full"]["events"]
        for measure, row in startup["summary"].items():
            out.append((f"{measure}, {events:,} events / empty ({row['full']['median_ms']:.0f} ms vs "
                        f"{row['empty']['median_ms']:.0f} ms)", f"{row['ratio_full_over_empty']:.2f}",
                        f"~1 (<= {FLAT:g})"))
    if scale is None:
        out.append(("bench.scale", "not run", ""))
    else:
        one, two = scale["one_replica"], scale["two_replicas"]
        out.append((f"burst of {one['count']} on 3 brokers, throughput 2 replicas / 1 "
                    f"({two['throughput_per_s']:.1f}/s vs {one['throughput_per_s']:.1f}/s)",
                    f"{scale['ratio_throughput_two_over_one']:.2f}", "> 1 (little on 2 cores)"))
    return out


def _hop_rows(hops: dict | None) -> list[tuple[str, str, str]]:
    """Where the latency runs' time went: per service, p50 signoff/relay with both figures in ms.
    No goal: they explain the p50 ratio above."""
    if not hops:
        return []
    out = []
    for ours, theirs in zip(hops["signoff"], hops["relay"], strict=True):
        if ours["hop"] == "path":
            continue  # the whole path is the latency above, from another clock
        ratio = hops["ratios_signoff_over_relay"][ours["hop"]]["p50"]
        both = " vs ".join("-" if h["p50_ms"] is None else f"{h['p50_ms']:.0f} ms" for h in (ours, theirs))
        out.append((f"  {ours['hop']} hop p50, signoff/relay ({both})", "-" if ratio is None else f"{ratio:.2f}", ""))
    return out


def table(lines: list[tuple[str, str, str]]) -> str:
    width = max(len(r[0]) for r in lines)
    head = f"{'issue 15 figure':<{width}} | {'measured':>8} | goal"
    return "\n".join([head, "-" * len(head)] + [f"{a:<{width}} | {b:>8} | {c}" for a, b, c in lines])


def main() -> int:
    print("\n" + table(rows(_load("results"), _load("burst"), _load("startup"), _load("scale"))))
    print(f"(from {OUT.relative_to(ROOT)}/results.json, burst.json, startup.json, scale.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
