"""`python -m bench.chaos --seed N --submissions M` (or `make chaos`): the scenario of seed N, once
without faults (the baseline) and once under faults, each on a broker and services of its own;
prints the figures table and the evidence behind each non-zero figure, writes the JSON under
.data/chaos/. Exits 1 when a figure that must be zero is not (lost, stuck, duplicate deployments,
unapproved deployments, backwards moves)."""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import time
from datetime import UTC, datetime

from bench.chaos import scenario as plan
from bench.chaos.drive import Chaos, Run, run
from bench.chaos.report import as_json, evidence, failures, table
from bench.chaos.world import ROOT

OUT = ROOT / ".data" / "chaos"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.chaos", description=(
        "A seeded scenario through the four services under faults (service and broker kills), beside "
        "the same scenario without faults: the figures table, and the JSON under .data/chaos/."))
    p.add_argument("--seed", type=int, default=1, help="the scenario and the faults [1]")
    p.add_argument("--submissions", type=int, default=120, help="submissions in all [120]")
    p.add_argument("--models", type=int, default=4, help="model names besides the targeted ones [4]")
    p.add_argument("--mean-gap", type=float, default=0.5, help="mean seconds between two submissions [0.5]")
    p.add_argument("--kill-gap", type=float, nargs=2, default=(2.0, 6.0), metavar=("MIN", "MAX"),
                   help="seconds between two service kills [2 6]")
    p.add_argument("--drain-timeout", type=float, default=300.0,
                   help="seconds after the schedule for every submission to reach its end [300]")
    p.add_argument("--no-baseline", action="store_true", help="only the run under faults")
    args = p.parse_args(argv)
    if args.submissions < 1 + 4 + 2 * 2:
        p.error("--submissions must be at least 9: the probe, its 4 copies and 2 pairs of out-of-order approvals")
    return args


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt  # SIGTERM unwinds like Ctrl-C: every `finally` stops what it started


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    scenario = plan.build(args.seed, args.submissions, args.models, mean_gap=args.mean_gap)
    folder = OUT / f"seed{args.seed}"
    shutil.rmtree(folder, ignore_errors=True)  # the previous run of this seed: logs, store, broker data
    started = time.monotonic()
    runs: list[Run] = []
    try:
        if not args.no_baseline:
            print(f"baseline: {args.submissions} submissions, no faults", flush=True)
            runs.append(run(folder / "baseline", scenario, Chaos(enabled=False), args.drain_timeout, "baseline"))
        print(f"faults: the same {args.submissions} submissions, seed {args.seed}", flush=True)
        runs.append(run(folder / "faults", scenario, Chaos(kill_gap=tuple(args.kill_gap)), args.drain_timeout,
                        "faults"))
    except KeyboardInterrupt:
        print("interrupted: everything started was stopped", file=sys.stderr)
        return 130
    wall = round(time.monotonic() - started, 1)
    print("\n" + table(runs) + "\n")
    for r in runs:
        if text := evidence(r):
            print(text)
    report = as_json(scenario, runs, started_at=datetime.now(UTC).isoformat(), wall_seconds=wall,
                     args=vars(args), logs=str(folder))
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"seed{args.seed}.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    print(f"\n{wall} s in all; JSON in {path.relative_to(ROOT)}, service logs under {folder.relative_to(ROOT)}")
    if bad := failures(runs):
        print("FIGURES THAT MUST BE ZERO ARE NOT: " + "; ".join(bad), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
